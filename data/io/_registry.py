"""The registry of event-file formats: each format registers a reader class and, optionally, a writer.

A format is found by name (the ``format=`` option), by content (magic bytes, checked first, because
the content is the truth when a file was renamed) and by file suffix. Names are unique: registering a
name twice is a programming error and raises.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from data.errors import DataError
from data.events import Events, SensorSize

if TYPE_CHECKING:
    from data.io._base import EventReader

# How many leading bytes a sniffer sees: enough for a Prophesee ASCII header.
SNIFF_BYTES = 4096

Sniffer = Callable[[bytes], bool]  # head of the file (at most SNIFF_BYTES) -> is it this format?
Writer = Callable[[Path, Events, SensorSize], None]  # writes canonical, checked events to a path


@dataclasses.dataclass(frozen=True)
class FormatSpec:
    """One registered format.

    Attributes:
        name: the key users pass as ``format=``.
        suffixes: lower-case file suffixes (with the dot) that select this format.
        reader: the EventReader subclass that opens such files.
        sniff: recognises the format from the first bytes of a file, or None when it cannot.
        writer: writes events in this format, or None when the format is read-only.
        description: one line for listings and error messages.
    """

    name: str
    suffixes: tuple[str, ...]
    reader: type[EventReader]
    sniff: Sniffer | None = None
    writer: Writer | None = None
    description: str = ""


_FORMATS: dict[str, FormatSpec] = {}


def register_format(
    name: str, *, suffixes: tuple[str, ...], sniff: Sniffer | None = None, description: str = ""
) -> Callable[[type[EventReader]], type[EventReader]]:
    """Class decorator: register an EventReader subclass as the reader of format ``name``."""

    def decorate(reader: type[EventReader]) -> type[EventReader]:
        if name in _FORMATS:
            raise KeyError(f"event format {name!r} is already registered")
        _FORMATS[name] = FormatSpec(name, tuple(s.lower() for s in suffixes), reader, sniff, None, description)
        return reader

    return decorate


def register_writer(name: str) -> Callable[[Writer], Writer]:
    """Function decorator: register the writer of an already registered format."""

    def decorate(writer: Writer) -> Writer:
        spec = _FORMATS[name]
        if spec.writer is not None:
            raise KeyError(f"event format {name!r} already has a writer")
        _FORMATS[name] = dataclasses.replace(spec, writer=writer)
        return writer

    return decorate


def available_formats() -> dict[str, FormatSpec]:
    """The registered formats by name (a copy)."""
    return dict(_FORMATS)


def writable_formats() -> list[str]:
    """Names of the formats that have a writer."""
    return [name for name, spec in _FORMATS.items() if spec.writer is not None]


def _listing(names: Iterator[str] | list[str]) -> str:
    return ", ".join(
        f"{name} ({'/'.join(_FORMATS[name].suffixes)})" for name in names
    )


def get_format(name: str, path: Path | str | None = None) -> FormatSpec:
    """Look a format up by name; DataError listing the registered ones when it is unknown."""
    spec = _FORMATS.get(str(name).lower())
    if spec is None:
        where = f"{path}: " if path is not None else ""
        raise DataError(f"{where}unknown event format {name!r}; supported formats: {_listing(list(_FORMATS))}")
    return spec


def _suffix_candidates(path: Path) -> list[str]:
    # ".tar.gz"-like double suffixes first, then the last suffix.
    suffixes = [s.lower() for s in path.suffixes]
    return ["".join(suffixes[i:]) for i in range(len(suffixes))]


def format_from_suffix(path: Path) -> FormatSpec | None:
    """The format whose suffix matches the path, or None."""
    for suffix in _suffix_candidates(path):
        for spec in _FORMATS.values():
            if suffix in spec.suffixes:
                return spec
    return None


def detect_format(path: Path, head: bytes) -> FormatSpec:
    """The format of a file: magic bytes first, then the suffix.

    Raises:
        DataError: naming the file and listing the supported formats when neither tells.
    """
    for spec in _FORMATS.values():
        if spec.sniff is not None and spec.sniff(head):
            return spec
    spec = format_from_suffix(path)
    if spec is None:
        raise DataError(
            f"{path}: cannot tell the event format from its suffix or content; "
            f"supported formats: {_listing(list(_FORMATS))} (or pass format=...)"
        )
    return spec


def writer_for(path: Path, name: str | None) -> FormatSpec:
    """The format to write ``path`` in: ``name`` if given, else from the suffix; it must have a writer."""
    spec = get_format(name, path) if name is not None else format_from_suffix(path)
    writable = writable_formats()
    if spec is None or spec.writer is None:
        what = f"format {spec.name!r}" if spec is not None else "this suffix"
        raise DataError(f"{path}: cannot write events in {what}; writable formats: {_listing(writable)}")
    return spec
