"""Per-format details: files written by other encoders or by hand, layouts, counters that wrap."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from data.errors import DataError
from data.events import EVENT_DTYPE, make_events
from data.io import available_formats, read_events, register_format, write_events
from data.io._registry import detect_format, get_format
from data.io.evt3 import Evt3State, decode_evt3
from data.io.prophesee import parse_header


def _same(events: np.ndarray, expected: np.ndarray) -> None:
    assert events.dtype == EVENT_DTYPE and len(events) == len(expected)
    for field in ("x", "y", "t", "p"):
        want = np.asarray(expected[field]).astype(events[field].dtype)
        np.testing.assert_array_equal(events[field], want, err_msg=field)


def _events(
    n: int = 1_000, size: tuple[int, int] = (64, 48), t0: int = 0, span: int = 1_000_000, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, span, n))
    return make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n), t, rng.integers(0, 2, n))


# --- Prophesee DAT ------------------------------------------------------------------------------


def _dat_bytes(events: np.ndarray, event_type: int, header: str = "% Version 2\n") -> bytes:
    records = np.empty(len(events), dtype=[("t", "<u4"), ("w", "<u4")])
    records["t"] = events["t"] & 0xFFFFFFFF
    x, y, p = (events[f].astype(np.uint32) for f in ("x", "y", "p"))
    records["w"] = x | (y << 14) | (p << 28)
    return header.encode() + bytes([event_type, 8]) + records.tobytes()


@pytest.mark.parametrize("event_type", [0x00, 0x0C])  # '2d' (which faery refuses) and 'cd'
def test_dat_2d_and_cd(tmp_path: Path, event_type: int) -> None:
    events = _events()
    path = tmp_path / "hand.dat"
    path.write_bytes(_dat_bytes(events, event_type, "% Data file containing Event2D events.\n% Version 2\n"))
    recording = read_events(path)
    _same(recording.events, events)
    assert recording.sensor_size_source == "largest coordinate + 1"


@pytest.mark.parametrize("version", ["dat1", "dat2"])
def test_dat_written_by_faery(tmp_path: Path, version: str) -> None:
    from faery.extension import dat

    events = _events(size=(304, 240), t0=5_000_000_000)  # beyond 32 bits: faery writes a T0 line
    packet = np.empty(len(events), dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("payload", "u1")])
    for field, source in (("t", "t"), ("x", "x"), ("y", "y"), ("payload", "p")):
        packet[field] = events[source]
    with dat.Encoder(tmp_path / "f.dat", version, "cd", True, (304, 240)) as encoder:
        encoder.write(packet)
    recording = read_events(tmp_path / "f.dat")
    _same(recording.events, events)
    assert recording.sensor_size == (304, 240)


def test_dat_uint32_times_unwrap(tmp_path: Path) -> None:
    # Steps below 2**31 us, so each drop of the uint32 time is a wrap (a larger gap is ambiguous).
    t = np.array([0, 2**31, 2**32 - 10, 2**32 + 5, 2**32 + 2**31 + 3, 2**33 - 5, 2**33 + 7], dtype=np.int64)
    events = make_events([1, 2, 3, 4, 5, 6, 7], [1] * 7, t, [1, 0, 1, 0, 1, 0, 1])
    path = tmp_path / "wrap.dat"
    path.write_bytes(_dat_bytes(events, 0x0C))
    _same(read_events(path).events, events)


def test_dat_trigger_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "trigger.dat"
    path.write_bytes(b"% Version 2\n" + bytes([0x0E, 8]) + bytes(16))
    with pytest.raises(DataError, match=r"trigger\.dat.*type 0x0E"):
        read_events(path)


# --- ATIS binary (N-MNIST) ------------------------------------------------------------------------


@pytest.mark.slow  # importing tonic imports torch
def test_atis_overflow_markers_match_tonic(tmp_path: Path) -> None:
    import tonic.io

    marker = (0, 240, 0, 0)  # (x, y, p, 23-bit time); y == 240: an overflow, +8192 us from here on
    rows = [(3, 4, 1, 100), (5, 6, 0, 8_388_000), marker, (7, 8, 1, 50), marker, marker, (9, 1, 0, 60)]
    raw = bytearray()
    for x, y, p, ts in rows:
        raw += bytes([x, y, (p << 7) | (ts >> 16) & 0x7F, (ts >> 8) & 0xFF, ts & 0xFF])
    path = tmp_path / "overflow.bin"
    path.write_bytes(bytes(raw))
    expected = make_events([3, 5, 7, 9], [4, 6, 8, 1], [100, 8_388_000, 50 + 8192, 60 + 3 * 8192], [1, 0, 1, 0])
    tonic_events = tonic.io.read_mnist_file(str(path), dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))
    _same(tonic_events.astype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "i1")]), expected)
    with pytest.raises(DataError, match="backwards at event 2"):  # 8,388,000 -> 8,242 us: a real error
        read_events(path)


@pytest.mark.real_data
def test_atis_chunks_carry_the_overflow_count(shared_data: Path) -> None:
    from data.io import iter_events

    path = shared_data / "events" / "tonic_sample_nmnist.bin"
    whole = read_events(path).events
    _same(np.concatenate(list(iter_events(path, chunk_size=7))), whole)


# --- Event Stream and AEDAT 4 against faery -----------------------------------------------------


def test_es_agrees_with_faery_both_ways(tmp_path: Path) -> None:
    import faery

    events = _events(size=(64, 48), t0=123)
    packet = np.empty(len(events), dtype=faery.EVENTS_DTYPE)
    packet["t"], packet["x"], packet["y"], packet["on"] = events["t"], events["x"], events["y"], events["p"] > 0
    faery.events_stream_from_array(packet, (64, 48)).to_file(tmp_path / "faery.es", zero_t0=False)
    recording = read_events(tmp_path / "faery.es")
    _same(recording.events, events)
    assert recording.sensor_size == (64, 48)
    ours = write_events(tmp_path / "ours.es", events, (64, 48))
    theirs = np.concatenate(list(faery.events_stream_from_file(ours)))
    np.testing.assert_array_equal(theirs["y"], events["y"])  # same row convention (y = 0 on top)
    np.testing.assert_array_equal(theirs["t"], events["t"])


def test_aedat4_events_stream_need_not_be_first(tmp_path: Path) -> None:
    from faery.extension import aedat

    def node(name, path, attributes, nodes=()):
        return aedat.DescriptionNode(name=name, path=path, attributes=attributes, nodes=list(nodes))

    text = lambda v: aedat.DescriptionAttribute(attribute_type="string", value=v)  # noqa: E731
    number = lambda v: aedat.DescriptionAttribute(attribute_type="int", value=v)  # noqa: E731
    root = "/mainloop/Recorder/outInfo/"
    description = [node("outInfo", root, {}, [
        node("0", root + "0/", {"compression": text("NONE"), "originalOutputName": text("triggers"),
                                "typeIdentifier": text("TRIG")}),
        node("1", root + "1/", {"compression": text("NONE"), "originalOutputName": text("events"),
                                "typeIdentifier": text("EVTS")},
             [node("info", root + "1/info/", {"sizeX": number(64), "sizeY": number(48), "source": text("test")})]),
    ])]
    events = _events(t0=1_605_537_493_718_345)
    packet = np.empty(len(events), dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])
    packet["t"], packet["x"], packet["y"], packet["on"] = events["t"], events["x"], events["y"], events["p"] > 0
    with aedat.Encoder(tmp_path / "two.aedat4", description, None) as encoder:
        encoder.write(1, packet)
    recording = read_events(tmp_path / "two.aedat4")
    _same(recording.events, events)
    assert recording.sensor_size == (64, 48)


# --- Prophesee RAW EVT 3.0 --------------------------------------------------------------------------


def _evt3_words(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """A hand-made EVT 3.0 stream: TIME_HIGH, TIME_LOW, ADDR_Y, ADDR_X per event, as cameras do."""
    words = np.empty((len(t), 4), dtype=np.uint16)
    words[:, 0] = 0x8000 | ((t >> 12) & 0xFFF)
    words[:, 1] = 0x6000 | (t & 0xFFF)
    words[:, 2] = y
    words[:, 3] = 0x2000 | x | (p << 11)
    return words.ravel()


@pytest.mark.parametrize("version", ["evt2", "evt3"])
def test_raw_written_by_faery(tmp_path: Path, version: str) -> None:
    from data.io._faery import faery_write

    rng = np.random.default_rng(2)
    n = 20_000  # dense rows, so that faery's EVT 3.0 encoder also writes vector words
    t = np.sort(rng.integers(0, 2_000_000, n)) + 1_600_000_000_000_000
    events = make_events(rng.integers(0, 40, n), rng.integers(0, 4, n), t, rng.integers(0, 2, n))
    order = np.lexsort((events["x"], events["y"], events["t"]))
    events = events[order]
    faery_write(tmp_path / "f.raw", events, (64, 48), "evt", version=version, zero_t0=True)
    recording = read_events(tmp_path / "f.raw")
    assert recording.sensor_size == (64, 48)
    decoded = recording.events[np.lexsort((recording.events["x"], recording.events["y"], recording.events["t"]))]
    _same(decoded, events)  # same events; within one microsecond an encoder may reorder them


def test_evt3_follows_the_24_bit_wrap(tmp_path: Path) -> None:
    # 40 s, an event every 10 ms: the 24-bit time wraps twice (faery 0.7.1 sticks at 16.77 s).
    n = 4_000
    t = np.arange(n, dtype=np.int64) * 10_000 + 5
    x, y, p = np.arange(n) % 30, np.arange(n) % 34, np.arange(n) % 2
    path = tmp_path / "wrap.raw"
    path.write_bytes(b"% evt 3.0\n% format EVT3;width=64;height=48\n% end\n" + _evt3_words(t, x, y, p).tobytes())
    recording = read_events(path)
    _same(recording.events, make_events(x, y, t, p))
    assert recording.sensor_size == (64, 48)


def test_evt3_vectors() -> None:
    # TIME_HIGH 1, TIME_LOW 5, ADDR_Y 7, VECT_BASE_X 100 (ON), VECT_12 bits 0 and 11, VECT_8 bit 2,
    # ADDR_X 3 (OFF), TIME_LOW 9, VECT_8 bit 0 (continues at column 120).
    words = np.array(
        [0x8001, 0x6005, 0x0007, 0x3000 | 100 | 0x800, 0x4801, 0x5004, 0x2003, 0x6009, 0x5001], dtype=np.uint16
    )
    expected = make_events([100, 111, 114, 3, 120], [7] * 5, [4101, 4101, 4101, 4101, 4105], [1, 1, 1, 0, 1])
    _same(decode_evt3(words, Evt3State()), expected)
    state, pieces = Evt3State(), []
    for word in words:  # one word at a time: the state carries everything across blocks
        pieces.append(decode_evt3(np.array([word], dtype=np.uint16), state))
    _same(np.concatenate(pieces), expected)


@pytest.mark.real_data
def test_evt3_blocks_of_any_size_agree(shared_data: Path) -> None:
    path = shared_data / "events" / "expelliarmus_evt3_sample.raw"
    _, offset = parse_header(path)
    words = np.frombuffer(path.read_bytes()[offset:], dtype="<u2")
    reference = np.load(f"{path}.reference.npy")
    for block in (1_001, 65_537):  # word-at-a-time blocks: test_evt3_vectors
        state = Evt3State()
        decoded = np.concatenate([decode_evt3(words[i : i + block], state) for i in range(0, len(words), block)])
        _same(decoded, reference)  # this sample needs no clamping once TIME_LOW never moves time back


# --- HDF5, text, numpy --------------------------------------------------------------------------------


def test_hdf5_dsec_layout_by_hand(tmp_path: Path) -> None:
    events = _events(size=(640, 480), t0=0)
    path = tmp_path / "dsec.h5"
    with h5py.File(path, "w") as file:  # DSEC: uint32 t from t_offset, no sensor size
        group = file.create_group("events")
        group["x"], group["y"] = events["x"], events["y"]
        group["t"] = events["t"].astype(np.uint32)
        group["p"] = events["p"].astype(np.uint8)
        file["t_offset"] = np.int64(1_000_000_000)
    expected = events.copy()
    expected["t"] += 1_000_000_000
    _same(read_events(path, (640, 480)).events, expected)
    assert read_events(path).sensor_size_source == "largest coordinate + 1"


def test_hdf5_writer_ms_to_idx(tmp_path: Path) -> None:
    events = _events(t0=7_000_123, span=50_000)
    path = write_events(tmp_path / "w.h5", events, (64, 48))
    with h5py.File(path, "r") as file:
        ms_to_idx, t_offset = file["ms_to_idx"][()], int(file["t_offset"][()])
        relative = file["events/t"][()].astype(np.int64)
    assert t_offset == events["t"][0]
    for ms, index in enumerate(ms_to_idx):  # index of the first event at or after each millisecond
        assert np.all(relative[:index] < ms * 1000) and np.all(relative[index:] >= ms * 1000)


def test_text_eth_layout(tmp_path: Path) -> None:
    lines = "240 180\n# a comment\n1468939993.067416 10 20 1\n1468939993.0675 11 21 0\n1468939993.1 12 22 -1\n"
    path = tmp_path / "events.txt"
    path.write_text(lines)
    recording = read_events(path)
    t = [1468939993067416, 1468939993067500, 1468939993100000]
    _same(recording.events, make_events([10, 11, 12], [20, 21, 22], t, [1, 0, 0]))
    assert recording.sensor_size == (240, 180)
    path.write_text("\n".join(lines.splitlines()[2:]) + "\n")  # no size line: largest coordinate + 1
    assert read_events(path).sensor_size == (13, 23)


def test_npz_from_elsewhere(tmp_path: Path) -> None:
    events = _events()
    tonic_like = np.empty(len(events), dtype=[("t", "<i8"), ("x", "<i4"), ("y", "<i4"), ("p", "?")])
    for field in ("x", "y", "t", "p"):
        tonic_like[field] = events[field]
    np.savez_compressed(tmp_path / "t.npz", events=tonic_like, sensor_size=np.array([64, 48, 2]), label=np.int64(3))
    recording = read_events(tmp_path / "t.npz")
    _same(recording.events, events)
    assert recording.sensor_size == (64, 48)


# --- the registry ---------------------------------------------------------------------------------------


def test_registry_refuses_duplicates_and_lists_formats(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="already registered"):
        register_format("dat", suffixes=(".dat",))(type("Other", (), {}))
    with pytest.raises(DataError, match=r"unknown event format 'evt9'.*aedat4.*raw.*text"):
        get_format("evt9")
    assert detect_format(tmp_path / "x.whatever", b"\x93NUMPY\x01\x00").name == "npy"
    assert detect_format(tmp_path / "x.h5", b"Event Stream").name == "es"  # content beats suffix
    assert set(available_formats()) >= {"aedat4", "raw", "dat", "es", "atis_bin", "hdf5", "text", "npy", "npz"}
