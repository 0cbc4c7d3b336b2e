"""Bad input to the readers and writers: always a DataError naming the file, never a crash or a hang."""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np
import pytest

from data.errors import DataError
from data.events import make_events
from data.io import available_formats, iter_events, probe_events, read_events, writable_formats, write_events
from data.io import _registry
from data.io.faery_formats import _ioheader_data_position

REAL = ["tonic_sample.aedat4", "expelliarmus_evt2_sample.raw", "expelliarmus_evt3_sample.raw",
        "tonic_sample_ncars.dat", "tonic_sample_nmnist.bin"]
SUFFIX = {name: spec.suffixes[0] for name, spec in available_formats().items()}


def _events(n: int = 200, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, size[0], n), rng.integers(0, size[1], n)
    return make_events(x, y, np.sort(rng.integers(0, 10**6, n)), rng.integers(0, 2, n))


def _raises(path: Path, match: str | None = None, **options: object) -> DataError:
    """Every entry point raises a DataError whose message starts with the path."""
    errors = []
    calls = (
        lambda: read_events(path, **options),
        lambda: list(iter_events(path, **options)),
        lambda: probe_events(path, **options),
    )
    for call in calls:
        with pytest.raises(DataError, match=match) as info:
            call()
        assert str(path) in str(info.value)
        errors.append(info.value)
    return errors[0]


# --- paths and options --------------------------------------------------------------------------------


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _raises(tmp_path / "nothing.raw", "no such file")
    _raises(tmp_path, "is a directory")


@pytest.mark.parametrize("suffix", sorted({s for spec in available_formats().values() for s in spec.suffixes}))
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.touch()
    _raises(path, "empty")


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "events.xyz"
    path.write_bytes(b"\x01\x02\x03 not events")
    error = _raises(path, "cannot tell the event format")
    for name in available_formats():
        assert name in str(error)
    with pytest.raises(DataError, match="unknown event format 'mp4'.*supported formats"):
        read_events(path, format="mp4")


@pytest.mark.parametrize("bad", [(0, 10), (10,), "640x480", (1.5, 2), (70_000, 10)])
def test_bad_sensor_size_option(tmp_path: Path, bad: object) -> None:
    path = write_events(tmp_path / "e.npy", _events(), (64, 48))
    with pytest.raises(DataError, match="sensor_size"):
        read_events(path, bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "100"])
def test_bad_chunk_size(tmp_path: Path, bad: object) -> None:
    path = write_events(tmp_path / "e.npz", _events(), (64, 48))
    with pytest.raises(DataError, match="chunk_size"):
        iter_events(path, chunk_size=bad)  # type: ignore[arg-type]


def test_iter_events_checks_the_file_when_called(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        iter_events(tmp_path / "missing.dat")  # before the first next()


# --- sensor size ------------------------------------------------------------------------------------------


def test_events_outside_the_given_sensor(tmp_path: Path) -> None:
    path = write_events(tmp_path / "e.npy", _events(size=(64, 48)), (64, 48))
    _raises(path, r"outside the 32 x 48 sensor \(size from argument\)", sensor_size=(32, 48))


def test_file_size_disagrees_with_argument(tmp_path: Path) -> None:
    path = write_events(tmp_path / "e.npz", _events(), (64, 48))
    _raises(path, r"states a 64 x 48 sensor but sensor_size=\(640, 480\)", sensor_size=(640, 480))


def test_events_outside_the_size_a_file_states(tmp_path: Path) -> None:
    path = tmp_path / "lie.txt"
    path.write_text("10 10\n0.000001 12 3 1\n")
    _raises(path, r"x=12, y=3 lies outside the 10 x 10 sensor \(size from file\)")


@pytest.mark.real_data
def test_real_events_outside_a_small_sensor(shared_data: Path) -> None:
    _raises(shared_data / "events" / "tonic_sample_nmnist.bin", "outside the 20 x 20 sensor", sensor_size=(20, 20))


# --- time order -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["npz", "npy", "hdf5", "text", "dat", "atis_bin"])
def test_backward_timestamps_are_rejected(tmp_path: Path, fmt: str) -> None:
    events = make_events([1, 2, 3, 4], [1, 1, 1, 1], [10, 20, 15, 30], [1, 0, 1, 0])
    path = tmp_path / f"back{SUFFIX[fmt]}"
    available_formats()[fmt].writer(path, events, (8, 8))  # the writer alone: write_events refuses this
    _raises(path, r"timestamps go backwards at event 2 \(20 -> 15 us\)", sensor_size=(8, 8))


def test_write_events_refuses_unsorted_events(tmp_path: Path) -> None:
    events = make_events([1, 2], [1, 1], [20, 10], [1, 0])
    for fmt in writable_formats():
        with pytest.raises(DataError, match="backwards"):
            write_events(tmp_path / f"x{SUFFIX[fmt]}", events, (8, 8))
    assert not list(tmp_path.iterdir())


# --- damaged real files --------------------------------------------------------------------------------------


def _cut_inside_a_record(size: int, fraction: float) -> int:
    """A length near size * fraction that ends inside a record of 2, 4, 8 or 5 bytes.

    Records end at the end of the file, so keeping size - 13 (mod 40) bytes cuts one of them.
    """
    records = min(max(0, round((size * (1 - fraction) - 13) / 40)), (size - 13) // 40)
    return size - 13 - 40 * records


# AEDAT 4 files end with an index of their packets: a file without it loses no event (tested below),
# but one cut inside it is refused like any other cut file.
TRUNCATION_CASES = [(name, fraction) for name in REAL for fraction in (0.0001, 0.37, 0.9999)]


@pytest.mark.real_data
@pytest.mark.parametrize(("name", "fraction"), TRUNCATION_CASES)
def test_truncated_real_files(shared_data: Path, tmp_path: Path, name: str, fraction: float) -> None:
    data = (shared_data / "events" / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: _cut_inside_a_record(len(data), fraction)])
    _raises(path)


@pytest.mark.real_data
def test_aedat4_without_its_trailing_index_reads_every_event(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "events" / "tonic_sample.aedat4"
    data = source.read_bytes()
    (header_length,) = struct.unpack_from("<I", data, 14)
    index_start = _ioheader_data_position(source, data[18 : 18 + header_length])
    assert 18 + header_length < index_start < len(data)  # the packets, then the index
    path = tmp_path / "no_index.aedat4"
    path.write_bytes(data[:index_start])
    reference = np.load(shared_data / "events" / "tonic_sample.aedat4.reference.npy")
    events = read_events(path).events
    assert len(events) == len(reference)
    for field in "xytp":
        np.testing.assert_array_equal(events[field].astype(np.int64), reference[field].astype(np.int64))


@pytest.mark.real_data
@pytest.mark.parametrize(("name", "offset"), [
    ("tonic_sample.aedat4", 0), ("tonic_sample.aedat4", 5), ("tonic_sample.aedat4", 20),  # 20: a Rust panic
    ("expelliarmus_evt2_sample.raw", 0), ("expelliarmus_evt2_sample.raw", 60),
    ("expelliarmus_evt3_sample.raw", 3), ("tonic_sample_ncars.dat", 0), ("tonic_sample_ncars.dat", 20),
])
def test_flipped_header_bytes(shared_data: Path, tmp_path: Path, name: str, offset: int) -> None:
    data = bytearray((shared_data / "events" / name).read_bytes())
    data[offset] ^= 0xFF
    path = tmp_path / name
    path.write_bytes(bytes(data))
    _raises(path)


@pytest.mark.parametrize("version", [b"4.0", b"2.1"])  # faery 0.7.1 panics on EVT 2.1
def test_unsupported_evt_version(tmp_path: Path, version: bytes) -> None:
    path = tmp_path / "v.raw"
    path.write_bytes(b"% evt " + version + b"\n" + bytes(8))
    _raises(path, "no supported EVT version")


def test_npz_without_events_and_object_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", frames=np.zeros(3))
    _raises(tmp_path / "other.npz", "no 'events' array")
    np.save(tmp_path / "objects.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    _raises(tmp_path / "objects.npy", "Python objects")


def test_hdf5_not_in_the_dsec_layout(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as file:
        file["events/x"] = np.zeros(3, np.uint16)
    _raises(tmp_path / "other.h5", "missing datasets events/y, events/t, events/p")
    with h5py.File(tmp_path / "uneven.h5", "w") as file:
        for name, n in (("x", 3), ("y", 3), ("t", 2), ("p", 3)):
            file[f"events/{name}"] = np.zeros(n, np.int64)
    _raises(tmp_path / "uneven.h5", "different lengths")


def test_text_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("0.1 1 2 1\n0.2 1 two 0\n")
    _raises(path, "cannot parse 't x y p'")
    path.write_bytes(b"0.1 1 2 1\n\x00\xff\x00\n")
    _raises(path, "non-ASCII")


# --- writing ----------------------------------------------------------------------------------------------------


def test_write_errors(tmp_path: Path) -> None:
    events = _events()
    with pytest.raises(DataError, match=r"cannot write events in this suffix; writable formats: .*npz"):
        write_events(tmp_path / "e.mp4", events, (64, 48))
    with pytest.raises(DataError, match="does not exist"):
        write_events(tmp_path / "no" / "such" / "folder.npz", events, (64, 48))
    with pytest.raises(DataError, match="outside the 10 x 10 sensor"):
        write_events(tmp_path / "e.npz", events, (10, 10))
    with pytest.raises(DataError, match="missing fields"):
        write_events(tmp_path / "e.npz", np.zeros(3, dtype=[("x", "u2")]), (10, 10))
    negative = make_events([1], [1], [-5], [1])
    for fmt in ("raw", "dat", "es", "aedat4", "atis_bin"):
        with pytest.raises(DataError, match="negative|>= 0|outside 0"):
            write_events(tmp_path / f"n{SUFFIX[fmt]}", negative, (10, 10))
    with pytest.raises(DataError, match="ATIS binary holds x < 256 and y < 240"):
        write_events(tmp_path / "big.bin", events, (640, 480))
    assert not list(tmp_path.iterdir())  # nothing half-written, no temporary files


def test_a_failing_writer_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_events(tmp_path / "keep.npz", _events(), (64, 48))
    before = path.read_bytes()

    def broken(target: Path, events: np.ndarray, size: tuple[int, int]) -> None:
        target.write_bytes(b"PK half a file")
        raise OSError("disk full")

    spec = available_formats()["npz"]
    monkeypatch.setitem(_registry._FORMATS, "npz", dataclasses.replace(spec, writer=broken))
    with pytest.raises(DataError, match=r"keep\.npz: cannot write it .*disk full"):
        write_events(path, _events(n=10), (64, 48))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npz"]
