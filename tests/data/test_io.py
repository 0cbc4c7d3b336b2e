"""Event-file readers: agreement with the reference decodes, streaming, and every format's round trip."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from data.errors import DataError
from data.events import EVENT_DTYPE, make_events
from data.io import (
    available_formats,
    iter_events,
    probe_events,
    read_events,
    writable_formats,
    write_events,
)

# file -> (format, sensor size we report, where it comes from)
REAL_FILES = {
    "tonic_sample.aedat4": ("aedat4", (320, 240), "file"),
    "expelliarmus_evt2_sample.raw": ("raw", (640, 480), "the camera plugin hal_plugin_gen3_fx3"),
    "expelliarmus_evt3_sample.raw": ("raw", (1280, 720), "the camera plugin hal_plugin_gen41_evk3"),
    "tonic_sample_ncars.dat": ("dat", (78, 42), "largest coordinate + 1"),  # header states no size
    "tonic_sample_nmnist.bin": ("atis_bin", (34, 34), "largest coordinate + 1"),
}
SUFFIX = {name: spec.suffixes[0] for name, spec in available_formats().items()}


@pytest.fixture(scope="module")
def events_dir(shared_data: Path) -> Path:
    folder = shared_data / "events"
    if not folder.is_dir():
        pytest.skip(f"no recordings folder at {folder}")
    return folder


def _same(events: np.ndarray, reference: np.ndarray) -> None:
    assert events.dtype == EVENT_DTYPE
    assert len(events) == len(reference)
    for field in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(events[field], reference[field].astype(events[field].dtype), err_msg=field)


def synthetic(n: int = 20_000, size: tuple[int, int] = (200, 150), t0: int = 1_000, seed: int = 0) -> np.ndarray:
    """Sorted random events with repeated timestamps and both polarities, shape (n,)."""
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, 5_000_000, n))
    return make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n), t, rng.integers(0, 2, n))


# --- real recordings -------------------------------------------------------------------------


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_read_matches_reference(events_dir: Path, name: str) -> None:
    recording = read_events(events_dir / name)
    reference = np.load(events_dir / f"{name}.reference.npy")
    _same(recording.events, reference)
    fmt, size, source = REAL_FILES[name]
    assert (recording.format, recording.sensor_size, recording.sensor_size_source) == (fmt, size, source)
    assert recording.path == events_dir / name and len(recording) == len(reference)


# One event per chunk only on the small files (DAT, N-MNIST bin: a few thousand events each).
CHUNK_CASES = [(name, size) for name in sorted(REAL_FILES) for size in (1, 997, 65_536)
               if size > 1 or name.endswith((".dat", ".bin"))]


@pytest.mark.real_data
@pytest.mark.parametrize(("name", "chunk_size"), CHUNK_CASES)
def test_chunks_concatenate_to_read_events(events_dir: Path, name: str, chunk_size: int) -> None:
    path = events_dir / name
    chunks = list(iter_events(path, chunk_size=chunk_size))
    assert all(c.dtype == EVENT_DTYPE for c in chunks)
    assert all(len(c) == chunk_size for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk_size
    _same(np.concatenate(chunks), read_events(path).events)


@pytest.mark.real_data
def test_evt3_times_clamped_like_the_reference(events_dir: Path) -> None:
    # 1,455 events of this file carry a time 1-11 us earlier than the one before: clamped, not
    # stretched by 4096 us (TIME_HIGH spans 0xB2D..0xB2F, so nothing is later than 11,730,944 us).
    t = read_events(events_dir / "expelliarmus_evt3_sample.raw").events["t"]
    assert np.all(np.diff(t) >= 0)
    assert t.max() <= 11_730_944 and t.max() - t.min() < 9_000


@pytest.mark.real_data
def test_sensor_size_argument_and_probe(events_dir: Path) -> None:
    dat = events_dir / "tonic_sample_ncars.dat"
    recording = read_events(dat, (304, 240))  # N-CARS: the header states no size
    assert recording.sensor_size == (304, 240) and recording.sensor_size_source == "argument"
    raw = events_dir / "expelliarmus_evt2_sample.raw"
    assert read_events(raw, (1280, 720)).sensor_size == (1280, 720)  # the caller beats the plugin guess
    info = probe_events(raw)
    assert (info.format, info.sensor_size, info.num_events) == ("raw", (640, 480), 539_481)
    assert probe_events(dat).sensor_size == (78, 42)


@pytest.mark.real_data
def test_raw_without_plugin_falls_back_to_largest_coordinate(events_dir: Path, tmp_path: Path) -> None:
    data = (events_dir / "expelliarmus_evt2_sample.raw").read_bytes()
    stripped = tmp_path / "noplugin.raw"
    stripped.write_bytes(data.replace(b"% plugin_name hal_plugin_gen3_fx3\n", b""))
    reference = np.load(events_dir / "expelliarmus_evt2_sample.raw.reference.npy")
    recording = read_events(stripped)
    _same(recording.events, reference)
    assert recording.sensor_size == (int(reference["x"].max()) + 1, int(reference["y"].max()) + 1)
    assert recording.sensor_size_source == "largest coordinate + 1"


# --- round trips through every writer --------------------------------------------------------


@pytest.mark.parametrize("fmt", writable_formats())
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    size = (200, 150)
    events = synthetic(size=size)
    path = write_events(tmp_path / f"rec{SUFFIX[fmt]}", events, size)
    recording = read_events(path, size)
    _same(recording.events, events)
    assert recording.sensor_size == size and recording.format == fmt
    chunks = list(iter_events(path, chunk_size=3_001, sensor_size=size))
    _same(np.concatenate(chunks), events)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.parametrize("fmt", ["npz", "hdf5", "aedat4", "es", "raw", "dat", "text"])
def test_formats_that_store_the_sensor_size(tmp_path: Path, fmt: str) -> None:
    events = synthetic(n=500, size=(40, 30))
    path = write_events(tmp_path / f"rec{SUFFIX[fmt]}", events, (64, 48))
    recording = read_events(path)
    assert recording.sensor_size == (64, 48) and recording.sensor_size_source == "file"


@pytest.mark.parametrize("fmt", writable_formats())
def test_round_trip_empty_and_single(tmp_path: Path, fmt: str) -> None:
    for n in (0, 1):
        events = synthetic(n=n)
        if n == 0 and fmt == "atis_bin":  # headerless: an empty recording would be an empty file
            with pytest.raises(DataError, match="empty recording"):
                write_events(tmp_path / "rec0.bin", events, (200, 150))
            continue
        path = write_events(tmp_path / f"rec{n}{SUFFIX[fmt]}", events, (200, 150))
        recording = read_events(path, (200, 150))
        _same(recording.events, events)
        assert [len(c) for c in iter_events(path, sensor_size=(200, 150))] == ([1] if n else [])


@pytest.mark.parametrize("fmt", ["npz", "hdf5", "raw", "dat", "aedat4"])
def test_absolute_unix_times_survive(tmp_path: Path, fmt: str) -> None:
    events = synthetic(n=2_000, t0=1_605_537_493_718_345)  # AEDAT 4 stores Unix microseconds
    path = write_events(tmp_path / f"abs{SUFFIX[fmt]}", events, (200, 150))
    _same(read_events(path).events, events)


@pytest.mark.parametrize("fmt", ["npz", "hdf5", "raw", "dat", "atis_bin"])
def test_long_recordings_wrap_their_counters(tmp_path: Path, fmt: str) -> None:
    # 3 hours: past DAT's uint32 wrap (71.6 min), EVT 3.0's 24-bit time, the ATIS 23-bit time.
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(0, 3 * 3600 * 10**6, 5_000))
    t[1:] = np.minimum(t[1:], t[:-1] + (1 << 31) - 1)  # DAT needs gaps below 2**31 us
    t = np.maximum.accumulate(t)
    events = make_events(rng.integers(0, 34, len(t)), rng.integers(0, 34, len(t)), t, rng.integers(0, 2, len(t)))
    path = write_events(tmp_path / f"long{SUFFIX[fmt]}", events, (34, 34))
    _same(read_events(path, (34, 34)).events, events)


def test_write_events_accepts_tonic_arrays(tmp_path: Path) -> None:
    tonic_dtype = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
    events = synthetic(n=100)
    tonic_events = np.empty(len(events), tonic_dtype)
    for field in ("x", "y", "t", "p"):
        tonic_events[field] = events[field]
    np.save(tmp_path / "tonic.npy", tonic_events)
    _same(read_events(tmp_path / "tonic.npy", (200, 150)).events, events)
    _same(read_events(write_events(tmp_path / "t.npz", tonic_events, (200, 150))).events, events)


def test_format_option_overrides_suffix(tmp_path: Path) -> None:
    events = synthetic(n=300)
    path = write_events(tmp_path / "events.bytes", events, (200, 150), format="dat")
    recording = read_events(path, format="dat")
    assert recording.format == "dat"
    _same(recording.events, events)
    renamed = tmp_path / "really_npy.dat"  # the content (npy magic) wins over the suffix
    write_events(tmp_path / "e.npy", events, (200, 150)).rename(renamed)
    assert read_events(renamed, (200, 150)).format == "npy"


# --- streaming keeps memory bounded ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["dat", "atis_bin", "npy", "npz", "hdf5", "text"])
def test_streaming_does_not_load_the_file(tmp_path: Path, fmt: str) -> None:
    n = 100_000 if fmt == "text" else 1_000_000
    events = synthetic(n=n, size=(34, 34))
    path = write_events(tmp_path / f"big{SUFFIX[fmt]}", events, (34, 34))
    # The bound: a quarter of the events in memory or of the file, whichever is larger (text).
    bound = max(n * EVENT_DTYPE.itemsize, path.stat().st_size) / 4
    chunk = 500 if fmt == "text" else n // 50
    tracemalloc.start()
    try:
        total = 0
        for piece in iter_events(path, chunk_size=chunk, sensor_size=(34, 34)):
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == n
    assert peak < bound, f"peak {peak} bytes while streaming {path.stat().st_size} bytes of {fmt}"
