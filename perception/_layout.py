"""Guard against generic top-level names being shadowed.

``data``, ``heads`` and ``backbones`` are common folder names: a ``./data/`` folder in the working
directory would be imported instead of ours when Python puts the working directory first on the
path. The CLI calls ``check_layout`` before anything else so that mistake fails early and clearly.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

SIBLINGS = ("data", "heads", "backbones")


def package_root() -> Path:
    """The folder that holds the four packages (the repository root for an editable install)."""
    return Path(__file__).resolve().parent.parent


def check_layout() -> None:
    """Raise ImportError naming the package that resolves outside liquid-perception's folder."""
    root = package_root()
    for name in SIBLINGS:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is None or origin.parent.parent != root:
            raise ImportError(
                f"the package {name!r} resolves to {origin or 'nothing'}, not to liquid-perception's "
                f"{root / name}; a folder named {name!r} in the working directory or on PYTHONPATH "
                "shadows it: run from another directory or rename that folder"
            )
