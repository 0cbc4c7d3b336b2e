"""The compiled EVT 3.0 decoder gives exactly the numpy decoder's events and state, block by block."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.events import EVENT_DTYPE
from data.io import evt3
from data.io.evt3 import Evt3State, decode_evt3, decode_evt3_numpy
from data.io.prophesee import parse_header

numba = pytest.importorskip("numba")
from data.io.evt3 import decode_evt3_numba  # noqa: E402  (after the skip: it needs numba)

SAMPLE = Path("events") / "expelliarmus_evt3_sample.raw"
# Word kinds (top 4 bits): the decoded ones, and the rest (triggers, continued, system words).
EVENT_KINDS = (0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8)
OTHER_KINDS = (0x1, 0x7, 0x9, 0xA, 0xB, 0xC, 0xD, 0xE, 0xF)


def _same(events: np.ndarray, expected: np.ndarray) -> None:
    assert events.dtype == EVENT_DTYPE and expected.dtype == EVENT_DTYPE
    assert len(events) == len(expected)
    for field in ("x", "y", "t", "p"):
        np.testing.assert_array_equal(events[field], expected[field], err_msg=field)


def _decode_blocks(decoder, words: np.ndarray, cuts, state: Evt3State | None = None):
    """Decode ``words`` cut at the word offsets ``cuts``: the events and the state after each block."""
    state = Evt3State() if state is None else state
    bounds = [0, *sorted(set(int(c) for c in cuts if 0 < c < len(words))), len(words)]
    pieces, states = [], []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        pieces.append(decoder(words[start:stop], state))
        states.append(dataclasses.astuple(state))
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=EVENT_DTYPE), states


def _outcome(decoder, words: np.ndarray, cuts=(), state: Evt3State | None = None):
    """The events and states, or the type of the error the decoder raised."""
    try:
        return _decode_blocks(decoder, words, cuts, state)
    except Exception as error:  # noqa: BLE001  (compared between the decoders)
        return type(error)


def _agree(words: np.ndarray, cuts=(), state: Evt3State | None = None) -> None:
    state = Evt3State() if state is None else state
    want = _outcome(decode_evt3_numpy, words, cuts, dataclasses.replace(state))
    got = _outcome(decode_evt3_numba, words, cuts, dataclasses.replace(state))
    if isinstance(want, type) or isinstance(got, type):
        assert got == want
        return
    _same(got[0], want[0])
    assert got[1] == want[1]  # the state after every block


@pytest.fixture(scope="module")
def sample_words(shared_data: Path) -> np.ndarray:
    path = shared_data / SAMPLE
    _, offset = parse_header(path)
    return np.fromfile(path, dtype="<u2", offset=offset)


@pytest.fixture(scope="module")
def sample_numpy(sample_words: np.ndarray) -> np.ndarray:
    return decode_evt3_numpy(sample_words, Evt3State())


# --- The real sample ------------------------------------------------------------------------------


@pytest.mark.real_data
def test_sample_whole(shared_data: Path, sample_words: np.ndarray, sample_numpy: np.ndarray) -> None:
    numpy_state, numba_state = Evt3State(), Evt3State()
    expected = decode_evt3_numpy(sample_words, numpy_state)
    decoded = decode_evt3_numba(sample_words, numba_state)
    _same(decoded, expected)
    assert numba_state == numpy_state
    _same(decoded, np.load(shared_data / f"{SAMPLE}.reference.npy").astype(EVENT_DTYPE))
    _same(decode_evt3(sample_words, Evt3State()), expected)  # the default is the compiled one
    # Read-only words (np.frombuffer) and another byte order or stride give the same events.
    _same(decode_evt3_numba(np.frombuffer(sample_words.tobytes(), dtype="<u2"), Evt3State()), expected)
    _same(decode_evt3_numba(sample_words.astype(">u2"), Evt3State()), expected)
    spaced = np.zeros(2 * len(sample_words), dtype=np.uint16)
    spaced[::2] = sample_words
    _same(decode_evt3_numba(spaced[::2], Evt3State()), expected)


@pytest.mark.real_data
def test_sample_split_at_every_offset_of_a_prefix(sample_words: np.ndarray) -> None:
    # Cut in two at every word of the first 3,000 words: inside every kind of multi-word sequence
    # there (TIME_HIGH then TIME_LOW, ADDR_Y then ADDR_X, VECT_BASE_X then vectors).
    prefix = sample_words[:3_000]
    kinds = set((prefix >> 12).tolist())
    assert {0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8} <= kinds
    state = Evt3State()
    expected = decode_evt3_numpy(prefix, state)
    for cut in range(len(prefix) + 1):
        numba_state = Evt3State()
        pieces = [decode_evt3_numba(prefix[:cut], numba_state), decode_evt3_numba(prefix[cut:], numba_state)]
        decoded = np.concatenate(pieces)
        _same(decoded, expected)
        assert numba_state == state, cut


@pytest.mark.real_data
def test_sample_split_after_each_sequence_start(sample_words: np.ndarray, sample_numpy: np.ndarray) -> None:
    # Cut the whole file right after words that open a sequence: TIME_HIGH, VECT_BASE_X, ADDR_Y.
    kind = sample_words >> 12
    rng = np.random.default_rng(0)
    for opener in (0x8, 0x3, 0x0, 0x4):
        at = np.flatnonzero(kind == opener) + 1
        cuts = rng.choice(at, size=min(len(at), 40), replace=False)
        decoded, _ = _decode_blocks(decode_evt3_numba, sample_words, cuts)
        _same(decoded, sample_numpy)


@pytest.mark.real_data
@pytest.mark.parametrize("seed", range(4))
def test_sample_random_blocks_both_decoders(sample_words: np.ndarray, sample_numpy: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cuts = rng.integers(0, len(sample_words), size=[5, 30, 200, 1000][seed])
    numpy_events, numpy_states = _decode_blocks(decode_evt3_numpy, sample_words, cuts)
    numba_events, numba_states = _decode_blocks(decode_evt3_numba, sample_words, cuts)
    _same(numba_events, numpy_events)
    _same(numba_events, sample_numpy)
    assert numba_states == numpy_states


@pytest.mark.real_data
@pytest.mark.parametrize("block", [1, 2, 3, 7, 12, 4_096])
def test_sample_fixed_blocks(sample_words: np.ndarray, sample_numpy: np.ndarray, block: int) -> None:
    words = sample_words if block > 12 else sample_words[:20_000]
    expected = sample_numpy if block > 12 else decode_evt3_numpy(words, Evt3State())
    decoded, _ = _decode_blocks(decode_evt3_numba, words, range(block, len(words), block))
    _same(decoded, expected)


# --- Hand-made and random word streams ----------------------------------------------------------------


def test_empty_masks_keep_the_word_order() -> None:
    # VECT_8 whose mask (bits 0..7) is empty gives no event; the next vector gives two: the numpy
    # decoder used to take "as many events as event words" for "one event per word" and misplace them.
    words = np.array([0x8001, 0x0005, 0x3000 | 100, 0x5F00, 0x2003, 0x0009, 0x6007, 0x4003], dtype=np.uint16)
    want = [(3, 5, 4096, 0), (108, 9, 4103, 0), (109, 9, 4103, 0)]
    for decoder in (decode_evt3_numpy, decode_evt3_numba):
        assert decoder(words, Evt3State()).tolist() == want


def test_dispatch_and_fallback(monkeypatch) -> None:
    words = np.array([0x8001, 0x6005, 0x0007, 0x2803], dtype=np.uint16)
    calls = []
    monkeypatch.setattr(evt3, "decode_evt3_numba", lambda w, s: calls.append("numba") or decode_evt3_numba(w, s))
    monkeypatch.setattr(evt3, "decode_evt3_numpy", lambda w, s: calls.append("numpy") or decode_evt3_numpy(w, s))
    assert evt3.numba_available()
    evt3.decode_evt3(words, Evt3State())
    evt3.decode_evt3(words.astype(np.int64), Evt3State())  # not 16-bit words: the numpy decoder's business
    monkeypatch.setattr(evt3, "use_numba", False)
    evt3.decode_evt3(words, Evt3State())
    monkeypatch.setattr(evt3, "use_numba", True)
    monkeypatch.setattr(evt3, "numba", None)  # as when numba is not installed
    assert not evt3.numba_available()
    evt3.decode_evt3(words, Evt3State())
    assert calls == ["numba", "numpy", "numpy", "numpy"]


def test_the_same_errors() -> None:
    words = np.array([0x8001, 0x6005, 0x0007, 0x2803], dtype=np.uint16)
    _agree(words.astype(np.float64))  # TypeError from both
    _agree(words, state=Evt3State(started=True, time=1 << 63))  # OverflowError from both
    assert _outcome(decode_evt3_numpy, words.astype(np.float64)) is TypeError


def _random_words(rng: np.random.Generator, n: int, invalid: float) -> np.ndarray:
    """Camera-like streams: mostly event words, some other kinds, TIME_HIGH that steps, wraps and jumps."""
    kinds = rng.choice(EVENT_KINDS, size=n, p=[0.15, 0.4, 0.1, 0.1, 0.1, 0.1, 0.05])
    other = rng.random(n) < invalid
    kinds[other] = rng.choice(OTHER_KINDS, size=other.sum())
    values = rng.integers(0, 1 << 12, size=n)
    high = np.flatnonzero(kinds == 0x8)
    # TIME_HIGH: mostly small steps from 0xFF0 on (through the wrap), sometimes anywhere.
    values[high] = (0xFF0 + np.cumsum(rng.integers(0, 3, size=len(high)))) & 0xFFF
    jump = rng.random(len(high)) < 0.2
    values[high[jump]] = rng.integers(0, 1 << 12, size=jump.sum())
    return ((kinds.astype(np.uint16) << 12) | values.astype(np.uint16)).astype(np.uint16)


@pytest.mark.parametrize("seed", range(12))
def test_random_streams(seed: int) -> None:
    rng = np.random.default_rng(seed)
    words = _random_words(rng, int(rng.integers(1, 20_000)), invalid=[0.0, 0.05, 0.5][seed % 3])
    if seed % 4 == 0:  # some events before the first TIME_HIGH, which are dropped
        words = np.concatenate([np.array([0x0003, 0x2005, 0x3010, 0x4FFF], dtype=np.uint16), words])
    _agree(words)
    _agree(words, rng.integers(0, len(words), size=int(rng.integers(1, 300))))
    _agree(words, range(1, min(len(words), 500)))  # word by word at the start


@st.composite
def word_streams(draw):
    kind = st.sampled_from(EVENT_KINDS + EVENT_KINDS + OTHER_KINDS)
    value = st.one_of(st.integers(0, 0xFFF), st.sampled_from([0, 1, 10, 11, 12, 0x7FF, 0x800, 0xF00, 0xFF5, 0xFFF]))
    pairs = draw(st.lists(st.tuples(kind, value), max_size=120))
    words = np.array([(k << 12) | v for k, v in pairs], dtype=np.uint16)
    cuts = draw(st.lists(st.integers(0, max(len(words), 1)), max_size=12))
    return words, cuts


states = st.one_of(
    st.just(Evt3State()),
    st.builds(
        Evt3State,
        started=st.booleans(),
        time_high=st.integers(0, 0xFFF),
        wraps=st.integers(0, 1_000),
        time=st.integers(0, 1 << 40),
        y=st.integers(0, 0x7FF),
        base_x=st.integers(0, 70_000),  # beyond 65,535: x wraps like the numpy decoder's uint16
        polarity=st.integers(0, 1),
    ),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=word_streams(), state=states)
def test_hypothesis_streams(stream, state: Evt3State) -> None:
    words, cuts = stream
    _agree(words, cuts, state)
