"""Fixtures shared by all tests: where the shared real recordings are.

The recordings live beside the repository (``../shared/data``), never inside it; ``LP_SHARED_DATA``
points elsewhere. Tests that need them skip with the reason when the folder is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The shared data folder: $LP_SHARED_DATA, else ../shared/data beside the repository."""
    override = os.environ.get("LP_SHARED_DATA")
    return Path(override) if override else REPO / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (holds ``events/`` and ``video/``); skips the test when it is absent."""
    folder = shared_data_dir().resolve()
    if not folder.is_dir():
        pytest.skip(f"the shared recordings are not at {folder} (set LP_SHARED_DATA to their folder)")
    return folder
