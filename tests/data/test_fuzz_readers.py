"""Fuzzing the event-file readers and the video reader with mutated real files and random bytes.

Every outcome must be a correct decode (canonical events sorted by t, inside the sensor the reader
reports; ``read_events`` and ``iter_events`` agreeing) or a DataError naming the file: never another
exception from inside a library, never a hang (each case runs in a worker thread with a time bound),
never runaway memory (peak RSS checked loosely). Truncation and single flipped header bytes of the
real files are covered in test_io_errors.py; here hypothesis combines several mutations per case.
Runs are reproducible (``derandomize=True``, no example database).
"""
from __future__ import annotations

import resource
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.errors import DataError
from data.events import EVENT_DTYPE, make_events
from data.io import iter_events, probe_events, read_events, stated_sensor_size, write_events
from data.io.prophesee import parse_header
from data.video import iter_video, read_video, video_info

TIME_LIMIT_S = 10.0  # a case running longer is a hang
MEMORY_LIMIT_MB = 400  # peak RSS may grow at most this much over the warmed-up baseline
CUT_BYTES = 200_000  # real files are cut to about this many bytes (at a record boundary)
CHUNK = 4096  # iter_events chunk size: several chunks per file

FUZZ = settings(
    max_examples=50, deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- running one case -----------------------------------------------------------------------------------


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


_BASELINE_MB: list[float] = []


def _bounded(what: str, work: Callable[[], None]) -> None:
    """Run ``work`` in a worker thread; fail on a hang, re-raise what it raised, check memory."""
    if not _BASELINE_MB:
        _BASELINE_MB.append(_max_rss_mb())
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome.append(error)

    thread = threading.Thread(target=target, name=f"fuzz {what}", daemon=True)
    thread.start()
    thread.join(TIME_LIMIT_S)
    if thread.is_alive():
        pytest.fail(f"hang: decoding {what} took more than {TIME_LIMIT_S} s")
    if outcome:
        raise outcome[0]
    grown = _max_rss_mb() - _BASELINE_MB[0]
    assert grown < MEMORY_LIMIT_MB, f"runaway memory: peak RSS grew {grown:.0f} MB decoding {what}"


def _attempt(path: Path, call: Callable[[], object]) -> object | None:
    """The call's result, or None when it raised the project's error (whose message names the file)."""
    try:
        return call()
    except DataError as error:
        assert str(path) in str(error), f"DataError without the path: {error}"
        return None


def _check_events(events: np.ndarray, size: tuple[int, int] | None) -> None:
    assert isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE and events.ndim == 1
    if len(events):
        assert (np.diff(events["t"]) >= 0).all(), "events not sorted by t"
        assert set(np.unique(events["p"]).tolist()) <= {0, 1}
        if size is not None:
            assert int(events["x"].max()) < size[0] and int(events["y"].max()) < size[1]


def _check_size(size: object) -> None:
    assert isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size), size


def check_event_file(path: Path) -> None:
    """read_events, iter_events (exhausted), probe_events and stated_sensor_size on one file."""

    def work() -> None:
        stated = _attempt(path, lambda: stated_sensor_size(path))
        if stated is not None:
            _check_size(stated)
        recording = _attempt(path, lambda: read_events(path))
        if recording is not None:
            _check_size(recording.sensor_size)
            _check_events(recording.events, recording.sensor_size)
            if stated is not None:
                assert tuple(recording.sensor_size) == tuple(stated)
        chunks = _attempt(path, lambda: list(iter_events(path, chunk_size=CHUNK)))
        if chunks is not None:
            assert all(0 < len(chunk) <= CHUNK for chunk in chunks)
            streamed = np.concatenate(chunks) if chunks else np.empty(0, EVENT_DTYPE)
            _check_events(streamed, stated)  # type: ignore[arg-type]
            if recording is not None:
                assert np.array_equal(streamed, recording.events), "iter_events and read_events disagree"
            elif streamed.size:
                pytest.fail(f"iter_events decoded {len(streamed)} events where read_events failed")
        info = _attempt(path, lambda: probe_events(path))
        if info is not None and recording is not None:
            assert info.num_events == len(recording) and tuple(info.sensor_size) == tuple(recording.sensor_size)

    _bounded(str(path), work)


# --- mutations ---------------------------------------------------------------------------------------------

_POS = st.integers(0, 1 << 31)
MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.booleans(), _POS, st.integers(1, 255)),
    st.tuples(st.just("overwrite"), st.booleans(), _POS, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("truncate"), st.booleans(), _POS),
    st.tuples(st.just("duplicate"), st.booleans(), _POS, st.integers(1, 4096), _POS),
    st.tuples(st.just("delete"), st.booleans(), _POS, st.integers(1, 4096)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=512)),
)
MUTATIONS = st.lists(MUTATION, min_size=1, max_size=4)


def mutate(data: bytes, header: int, mutations: list[tuple]) -> bytes:
    """Apply mutations; a position lands in the header (its first ``header`` bytes) or after it."""
    out = bytearray(data)

    def at(in_header: bool, pos: int) -> int:
        head = min(header, len(out))
        if in_header and head:
            return pos % head
        return head + pos % max(1, len(out) - head)

    for kind, *args in mutations:
        if kind == "append":
            out += args[0]
            continue
        if not out:
            continue
        i = min(at(args[0], args[1]), len(out) - 1)
        if kind == "flip":
            out[i] ^= args[2]
        elif kind == "overwrite":
            out[i : i + len(args[2])] = args[2][: len(out) - i]
        elif kind == "truncate":
            del out[i:]
        elif kind == "duplicate":
            piece = bytes(out[i : i + args[2]])
            j = args[3] % (len(out) + 1)
            out[j:j] = piece
        elif kind == "delete":
            del out[i : i + args[2]]
    return bytes(out)


# --- the files to mutate ---------------------------------------------------------------------------------

REAL = ["expelliarmus_evt2_sample.raw", "expelliarmus_evt3_sample.raw", "tonic_sample.aedat4",
        "tonic_sample_ncars.dat", "tonic_sample_nmnist.bin"]
RECORD = {".raw": 0, ".dat": 8, ".bin": 5}  # RAW: the word size comes from the header


def _real_seed(folder: Path, name: str) -> tuple[bytes, int]:
    """The real file (cut to about CUT_BYTES at a record boundary) and its header length."""
    path = folder / "events" / name
    data = path.read_bytes()
    header = 0
    if path.suffix in (".raw", ".dat"):
        _, header = parse_header(path)
        unit = (4 if b"evt 2" in data[:header].lower() else 2) if path.suffix == ".raw" else 8
        header += 2 if path.suffix == ".dat" else 0  # DAT: event type and size bytes
        if len(data) > CUT_BYTES:
            data = data[: header + (CUT_BYTES - header) // unit * unit]
    elif path.suffix == ".bin":
        header = 5  # no header: treat the first record as one
    else:  # AEDAT 4: a file cut anywhere but just before its trailing index does not decode, so the whole file
        header = 2048
    return data, header


def _events(n: int = 300, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    rng = np.random.default_rng(1)
    return make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n),
                       np.sort(rng.integers(0, 200_000, n)), rng.integers(0, 2, n))


GENERATED = {".es": 16, ".h5": 512, ".txt": 6, ".npy": 128, ".npz": 200}  # suffix -> header bytes


def _generated_seed(folder: Path, suffix: str) -> tuple[bytes, int]:
    path = write_events(folder / f"seed{suffix}", _events(), (64, 48))
    return path.read_bytes(), GENERATED[suffix]


def _check_seed_decodes(folder: Path, name: str, data: bytes) -> None:
    path = folder / name
    path.write_bytes(data)
    recording = read_events(path)
    assert len(recording) > 100
    check_event_file(path)


@pytest.mark.real_data
@pytest.mark.parametrize("name", REAL)
def test_mutated_real_files(shared_data: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    data, header = _real_seed(shared_data, name)
    _check_seed_decodes(folder, f"seed_{name}", data)
    examples = 30 if name.endswith(".aedat4") else 60  # the whole AEDAT 4 file: slower cases

    @settings(FUZZ, max_examples=examples)
    @given(MUTATIONS)
    def case(mutations: list[tuple]) -> None:
        path = folder / name
        path.write_bytes(mutate(data, header, mutations))
        check_event_file(path)

    case()


@pytest.mark.parametrize("suffix", sorted(GENERATED))
def test_mutated_generated_files(tmp_path_factory: pytest.TempPathFactory, suffix: str) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    data, header = _generated_seed(folder, suffix)
    _check_seed_decodes(folder, f"copy{suffix}", data)

    @settings(FUZZ)
    @given(MUTATIONS)
    def case(mutations: list[tuple]) -> None:
        path = folder / f"mutated{suffix}"
        path.write_bytes(mutate(data, header, mutations))
        check_event_file(path)

    case()


# --- random bytes ----------------------------------------------------------------------------------------------

SUFFIXES = [".raw", ".aedat4", ".dat", ".bin", ".es", ".h5", ".txt", ".npy", ".npz", ""]
MAGIC = {
    "evt2": (".raw", b"% evt 2.0\n% geometry 64x48\n% end\n"),
    "evt3": (".raw", b"% format EVT3;width=64;height=48\n% end\n"),
    "dat": (".dat", b"% Version 2\n% Width 64\n% Height 48\n\x0c\x08"),
    "aedat4": (".aedat4", b"#!AER-DAT4.0\r\n"),
    "es": (".es", b"Event Stream\x02\x00\x00\x01"),
    "hdf5": (".h5", b"\x89HDF\r\n\x1a\n"),
    "npy": (".npy", b"\x93NUMPY\x01\x00"),
    "npz": (".npz", b"PK\x03\x04"),
    "text": (".txt", b"64 48\n"),
}


@pytest.mark.parametrize("kind", sorted(MAGIC))
def test_magic_then_random_bytes(tmp_path_factory: pytest.TempPathFactory, kind: str) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    suffix, magic = MAGIC[kind]

    @settings(FUZZ, max_examples=25)
    @given(st.binary(max_size=4096), st.booleans())
    def case(body: bytes, named: bool) -> None:
        path = folder / (f"magic{suffix}" if named else "magic")  # the content alone must decide
        path.write_bytes(magic + body)
        check_event_file(path)

    case()


# --- video ----------------------------------------------------------------------------------------------------


def check_video_file(path: Path) -> None:
    def work() -> None:
        info = _attempt(path, lambda: video_info(path))
        if info is not None:
            assert info.width > 0 and info.height > 0  # type: ignore[attr-defined]
        result = _attempt(path, lambda: read_video(path, max_bytes=256 << 20))
        if result is not None:
            times, frames = result  # type: ignore[misc]
            assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
            assert len(times) == len(frames) and (np.diff(times) >= 0).all() and np.isfinite(times).all()
        streamed = _attempt(path, lambda: [(t, frame.shape) for t, frame in iter_video(path, size=(32, 24))])
        if streamed is not None:
            assert all(shape == (24, 32, 3) for _, shape in streamed)  # type: ignore[union-attr]
            times = [t for t, _ in streamed]  # type: ignore[union-attr]
            assert times == sorted(times)

    _bounded(str(path), work)


@pytest.mark.real_data
def test_mutated_video(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    data = (shared_data / "video" / "faery_mp4_example.mp4").read_bytes()

    @settings(FUZZ, max_examples=40)
    @given(MUTATIONS)
    def case(mutations: list[tuple]) -> None:
        path = folder / "mutated.mp4"
        path.write_bytes(mutate(data, 4096, mutations))  # 4096: the ftyp and moov boxes lie up front
        check_video_file(path)

    case()


# --- random bytes under every suffix (the event readers' and the video reader's) --------------------------


@pytest.mark.parametrize(
    "suffix, check, examples",
    [(suffix, check_event_file, 25) for suffix in SUFFIXES] + [(s, check_video_file, 15) for s in (".mp4", ".avi")],
)
def test_random_bytes(tmp_path_factory: pytest.TempPathFactory, suffix: str, check, examples: int) -> None:
    folder = tmp_path_factory.mktemp("fuzz")

    @settings(FUZZ, max_examples=examples)
    @given(st.binary(min_size=1, max_size=4096))
    def case(body: bytes) -> None:
        path = folder / f"random{suffix}"
        path.write_bytes(body)
        check(path)

    case()


# --- regressions: inputs the fuzzing found -------------------------------------------------------------------


def _raises_everywhere(path: Path, match: str) -> None:
    def work() -> None:
        for call in (lambda: read_events(path), lambda: list(iter_events(path)), lambda: probe_events(path)):
            with pytest.raises(DataError, match=match) as info:
                call()
            assert str(path) in str(info.value)

    _bounded(str(path), work)


def _npy_bytes(events: np.ndarray, shape: str) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, events, allow_pickle=False)
    data = buffer.getvalue()
    return data.replace(f"({len(events)},)".encode(), shape.encode().ljust(len(f"({len(events)},)") + 10), 1)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_npy_header_with_a_huge_shape(tmp_path: Path, suffix: str) -> None:
    """Was: read_all allocated and zeroed shape x itemsize bytes (11.7 GB here) before reading."""
    header_padding_kept = _npy_bytes(_events(300), "(900000000,)")
    path = tmp_path / f"huge{suffix}"
    if suffix == ".npy":
        path.write_bytes(header_padding_kept)
    else:
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("events.npy", header_padding_kept)
    _raises_everywhere(path, r"truncated .*header says 900000000 events, the data ends inside event 300")


def test_npy_polarity_outside_0_1(tmp_path: Path) -> None:
    """Was: a canonical-dtype .npy with p = 5 or -1 came out with that p (canonical p is 0 or 1)."""
    events = _events(3)
    events["p"] = [5, -1, 1]
    np.save(tmp_path / "p.npy", events)
    assert read_events(tmp_path / "p.npy").events["p"].tolist() == [1, 0, 1]
    assert np.concatenate(list(iter_events(tmp_path / "p.npy")))["p"].tolist() == [1, 0, 1]


def test_aedat4_header_length_past_the_end(tmp_path: Path) -> None:
    """Was: faery allocated the stated header length (4 GB here) first; under a memory limit the
    allocation failure aborted the whole process."""
    path = tmp_path / "huge_header.aedat4"
    path.write_bytes(b"#!AER-DAT4.0\r\n" + (0xF0000000).to_bytes(4, "little") + bytes(64))
    _raises_everywhere(path, "corrupt AEDAT 4 header: it states 4026531840 bytes")


def test_aedat4_header_offsets_outside_the_header(tmp_path: Path) -> None:
    """faery parses the IOHeader flatbuffer unverified; an offset out of it is refused first."""
    path = tmp_path / "bad_offset.aedat4"
    path.write_bytes(b"#!AER-DAT4.0\r\n" + (8).to_bytes(4, "little") + (0x7FFFFFF0).to_bytes(4, "little") + bytes(4))
    _raises_everywhere(path, "corrupt AEDAT 4 header: an offset points outside it")


@pytest.mark.real_data
def test_aedat4_packet_length_past_the_end(shared_data: Path, tmp_path: Path) -> None:
    """Was: faery resized (and zero-filled) its packet buffer to the stated length, up to 4 GB of
    real memory, before finding the file too short."""
    data = bytearray((shared_data / "events" / "tonic_sample.aedat4").read_bytes())
    first_packet = 18 + int.from_bytes(data[14:18], "little")
    data[first_packet + 4 : first_packet + 8] = (0xFFFFFFF0).to_bytes(4, "little")
    path = tmp_path / "huge_packet.aedat4"
    path.write_bytes(bytes(data))
    _raises_everywhere(path, f"the packet at byte {first_packet} states 4294967280 bytes, past the end")


@pytest.mark.real_data
def test_aedat4_description_not_utf8(shared_data: Path, tmp_path: Path) -> None:
    """Was: faery raised UnicodeDecodeError, then panicked in a destructor and aborted the process
    (the input the fuzzing found: bytes 2054 and 2055 of the sample set to 0xC3 0x24)."""
    data = bytearray((shared_data / "events" / "tonic_sample.aedat4").read_bytes())
    data[2054:2056] = bytes([0o303, 0o44])
    path = tmp_path / "not_utf8.aedat4"
    path.write_bytes(bytes(data))
    _raises_everywhere(path, "corrupt AEDAT 4 header: the description is not UTF-8")


def test_es_header_with_zero_width(tmp_path: Path) -> None:
    """Was: stated_sensor_size gave (0, 48) for an Event Stream whose width bytes were zeroed (the
    input the fuzzing found: byte 16 set to 0); a stated size must be 1..65536 on each side."""
    path = write_events(tmp_path / "e.es", _events(), (64, 48))
    data = bytearray(path.read_bytes())
    data[16] = 0
    path.write_bytes(bytes(data))
    _raises_everywhere(path, r"the sensor size the file states: expected \(width, height\), each 1..65536, got \(0, 48\)")
    with pytest.raises(DataError, match="each 1..65536"):
        stated_sensor_size(path)


def test_dat_header_with_a_huge_width(tmp_path: Path) -> None:
    path = tmp_path / "wide.dat"
    path.write_bytes(b"% Version 2\n% Width 100000\n% Height 48\n\x0c\x08" + bytes(8))
    _raises_everywhere(path, r"got \(100000, 48\)")
