"""Decoders for Prophesee EVT 3.0 words: a compiled state machine (numba) and a vectorised numpy one.

Why not faery: faery 0.7.1 does not follow the 24-bit time counter when it wraps (every 16.78 s);
from then on every time sticks at the last value before the wrap. This decoder counts the wraps.

EVT 3.0 is a stream of little-endian 16-bit words, the type in the top 4 bits:
    0x0 ADDR_Y      y (11 bits)                  sets the row of the next events
    0x2 ADDR_X      x (11 bits), polarity bit 11 one event at (x, row)
    0x3 VECT_BASE_X x (11 bits), polarity bit 11 sets the base column and polarity of vectors
    0x4 VECT_12     12-bit mask                  events at base + bit for each set bit; base += 12
    0x5 VECT_8      8-bit mask                   likewise; base += 8
    0x6 TIME_LOW    time bits 11..0
    0x8 TIME_HIGH   time bits 23..12 (TIME_LOW counts from 0 again); a drop of nearly the whole
                    range is a wrap of the 24-bit counter
    others (triggers, continued, system words) carry no camera events.
Events before the first TIME_HIGH have no time and are dropped.

``decode_evt3`` runs the numba state machine (one pass counting the events of a block, one pass
writing them into the event array; about 10x the numpy decoder's speed) when numba is installed,
else the vectorised numpy decoder; both give the same events for every input (tests compare them)
and share ``Evt3State``, so a stream may be decoded block by block. The first call compiles (about
a second; ``cache=True`` keeps the machine code in ``__pycache__`` for later processes).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data.events import EVENT_DTYPE, Events

try:
    import numba
except ImportError:  # the numpy decoder below gives the same events, slower
    numba = None

ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8, TIME_LOW, TIME_HIGH = 0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8
WRAP = 1 << 24
# A TIME_HIGH drop of at least this many steps is a wrap, not a glitch (Prophesee's threshold: 10).
WRAP_DROP = 0xFFF - 10
_BITS = np.arange(12, dtype=np.uint16)


@dataclasses.dataclass
class Evt3State:
    """Decoder state carried from one block of words to the next."""

    started: bool = False  # a TIME_HIGH has been seen
    time_high: int = 0  # last TIME_HIGH value (12 bits)
    wraps: int = 0  # TIME_HIGH wraps so far
    time: int = 0  # current time in us (running maximum)
    y: int = 0
    base_x: int = 0  # the column of the next vector word
    polarity: int = 0


def _fill(mask: np.ndarray, values: np.ndarray, at: np.ndarray, before: int) -> np.ndarray:
    """For each word index in ``at``: the value of the last word <= it where ``mask`` holds, else ``before``.

    ``values`` (M,) belongs to the M words where ``mask`` (N,) holds, in order.
    """
    # Index 0 of the extended table is "before": cumsum counts the mask words seen so far.
    return np.concatenate(([before], values))[np.cumsum(mask, dtype=np.int32)[at]]


def decode_evt3_numpy(words: np.ndarray, state: Evt3State) -> Events:
    """Decode a block of EVT 3.0 words (N,) uint16 into events (in word order), updating ``state``.

    The time is the running maximum of the times the TIME_HIGH / TIME_LOW words set: a TIME_LOW
    smaller than the one before it (the EVT 3.0 sample has TIME_LOW 811 then 800) does not move
    time back. This is what faery and the reference decode do.
    """
    if not state.started:
        first = np.flatnonzero((words >> 12) == TIME_HIGH)
        if not len(first):
            return np.empty(0, dtype=EVENT_DTYPE)
        words = words[first[0] :]
        state.started, state.time_high = True, int(words[0] & 0xFFF)
        state.time = state.time_high << 12
    kind = words >> 12
    value = words & 0xFFF

    # Time words: TIME_HIGH (with its wrap count) and TIME_LOW; time = running maximum.
    timing_word = (kind == TIME_HIGH) | (kind == TIME_LOW)
    timing = np.flatnonzero(timing_word)
    times = value[timing].astype(np.int64)  # TIME_LOW values; TIME_HIGH words get 0 below
    high_at = np.flatnonzero(kind[timing] == TIME_HIGH)
    highs = times[high_at]
    previous = np.concatenate(([state.time_high], highs[:-1]))
    wraps = state.wraps + np.cumsum(previous - highs >= WRAP_DROP)
    high_time = wraps * WRAP + (highs << 12)
    times[high_at] = 0
    # Each run of timing words after a TIME_HIGH (or from the block start) shares that TIME_HIGH.
    runs = np.diff(np.concatenate(([0], high_at, [len(timing)])))
    times += np.repeat(np.concatenate(([state.wraps * WRAP + (state.time_high << 12)], high_time)), runs)
    if len(times):
        times[0] = max(times[0], state.time)
        np.maximum.accumulate(times, out=times)

    # Event words: ADDR_X (one event) and VECT_12 / VECT_8 (one per set bit).
    single_word = kind == ADDR_X
    vector_word = (kind == VECT_12) | (kind == VECT_8)
    event_words = np.flatnonzero(single_word | vector_word)
    t = _fill(timing_word, times, event_words, state.time)
    row_word = kind == ADDR_Y
    rows = np.flatnonzero(row_word)
    y = _fill(row_word, value[rows] & 0x7FF, event_words, state.y)

    # Vectors: the column is the last VECT_BASE_X plus 12 or 8 per vector word since.
    vector_stream = np.flatnonzero(vector_word | (kind == VECT_BASE_X))
    vkind = kind[vector_stream]
    vvalue = value[vector_stream].astype(np.int64)
    is_base = vkind == VECT_BASE_X
    step = np.where(vkind == VECT_12, 12, np.where(vkind == VECT_8, 8, 0))
    used = np.cumsum(step) - step  # columns used by vectors before each word of the vector stream
    base_at = np.maximum.accumulate(np.where(is_base, np.arange(len(vkind)), -1))
    known = base_at >= 0
    safe = np.maximum(base_at, 0)
    column = np.where(known, (vvalue[safe] & 0x7FF) + used - used[safe], state.base_x + used)
    polarity = np.where(known, vvalue[safe] >> 11, state.polarity)
    vectors = ~is_base
    masks = (vvalue[vectors] & np.where(vkind[vectors] == VECT_12, 0xFFF, 0xFF)).astype("<u2")
    bits = np.unpackbits(masks.view(np.uint8).reshape(-1, 2), axis=1, bitorder="little")[:, :12].astype(bool)

    is_single = single_word[event_words]
    single_values = value[event_words[is_single]]
    vector_of, bit = np.nonzero(bits)
    n = len(single_values) + len(vector_of)
    events = np.empty(n, dtype=EVENT_DTYPE)
    counts = np.ones(len(event_words), dtype=np.int64)
    counts[~is_single] = bits.sum(axis=1)
    # One event per event word: no runs to lay out (not merely n == len(event_words): an empty
    # mask, e.g. VECT_8 with only bits 8..11 set, gives no event and another vector two).
    if (counts == 1).all():
        x = np.empty(n, dtype=np.uint16)
        p = np.empty(n, dtype=np.int8)
        single_slot = is_single
        events["y"], events["t"] = y, t
    else:
        # Each event word owns a run of output slots; vector events (row-major over (vector word,
        # bit)) fill, in order, exactly the slots that single events leave free.
        start = np.cumsum(counts) - counts
        x = np.empty(n, dtype=np.uint16)
        p = np.empty(n, dtype=np.int8)
        single_slot = np.zeros(n, dtype=bool)
        single_slot[start[is_single]] = True
        events["y"], events["t"] = np.repeat(y, counts), np.repeat(t, counts)
    x[single_slot] = single_values & 0x7FF
    p[single_slot] = single_values >> 11
    vector_slot = ~single_slot
    x[vector_slot] = column[vectors][vector_of] + bit
    p[vector_slot] = polarity[vectors][vector_of]
    events["x"], events["p"] = x, p

    # Carry the state over to the next block.
    if len(highs):
        state.time_high, state.wraps = int(highs[-1]), int(wraps[-1])
    if len(times):
        state.time = int(times[-1])
    if len(rows):
        state.y = int(value[rows[-1]] & 0x7FF)
    if len(vkind):
        state.base_x, state.polarity = int(column[-1] + step[-1]), int(polarity[-1])
    return events


# --- The numba state machine --------------------------------------------------------------------

def _jit(func):
    return numba.njit(cache=True, nogil=True)(func) if numba is not None else func


_WORD = np.arange(1 << 16, dtype=np.int64)  # every 16-bit word
_SET_BITS = np.unpackbits(_WORD.astype("<u2").view(np.uint8).reshape(-1, 2), axis=1).sum(axis=1, dtype=np.int64)
# Events each word yields: 1 for ADDR_X, the set bits of the mask for VECT_12 / VECT_8, else 0.
_EVENTS_OF_WORD = np.select(
    [_WORD >> 12 == ADDR_X, _WORD >> 12 == VECT_12, _WORD >> 12 == VECT_8],
    [1, _SET_BITS[_WORD & 0xFFF], _SET_BITS[_WORD & 0xFF]],
    0,
).astype(np.uint8)
# The index of the lowest set bit of each 12-bit mask (the empty mask, never looked up, gets 12).
_LOWEST_BIT = _SET_BITS[((_WORD[: 1 << 12] & -_WORD[: 1 << 12]) - 1) & 0xFFF].astype(np.uint8)
del _WORD, _SET_BITS


@_jit
def _first_time_high(words):  # pragma: no cover (numba)
    for i in range(len(words)):
        if words[i] >> 12 == 0x8:
            return i
    return -1


@_jit
def _count_events(words, start, events_of_word):  # pragma: no cover (numba)
    n = 0
    for i in range(start, len(words)):
        n += events_of_word[words[i]]
    return n


@_jit
def _decode_events(words, start, out, time_high, wraps, time, y, base_x, polarity, lowest_bit):  # pragma: no cover
    """Decode ``words[start:]`` into ``out`` (sized by ``_count_events``); returns the new state."""
    high_time = wraps * WRAP + (time_high << 12)
    n = 0
    for i in range(start, len(words)):  # the kinds by their frequency in camera streams
        word = words[i]
        kind = word >> 12
        value = np.int64(word & 0xFFF)
        if kind == 0x2:  # ADDR_X: one event
            out[n].x, out[n].y, out[n].t, out[n].p = value & 0x7FF, y, time, value >> 11
            n += 1
        elif kind == 0x0:  # ADDR_Y
            y = value & 0x7FF
        elif kind == 0x4 or kind == 0x5:  # VECT_12 / VECT_8: an event per set bit, from base_x up
            mask = value if kind == 0x4 else value & 0xFF
            while mask:
                out[n].x, out[n].y, out[n].t, out[n].p = base_x + lowest_bit[mask], y, time, polarity
                n += 1
                mask &= mask - 1
            base_x += 12 if kind == 0x4 else 8
        elif kind == 0x6:  # TIME_LOW: time is the running maximum
            if high_time + value > time:
                time = high_time + value
        elif kind == 0x3:  # VECT_BASE_X
            base_x, polarity = value & 0x7FF, value >> 11
        elif kind == 0x8:  # TIME_HIGH, counting the wraps of the 24-bit counter
            if time_high - value >= WRAP_DROP:
                wraps += 1
            time_high = value
            high_time = wraps * WRAP + (time_high << 12)
            if high_time > time:
                time = high_time
    return n, time_high, wraps, time, y, base_x, polarity


def decode_evt3_numba(words: np.ndarray, state: Evt3State) -> Events:
    """``decode_evt3_numpy``'s events and state change, from a compiled state machine (needs numba).

    ``words`` is a 1-D array of 16-bit unsigned words (any byte order or stride). The state's
    fields must fit in int64 (an OverflowError otherwise), as every state a decoder leaves does.
    """
    words = np.asarray(words)
    if words.ndim != 1 or words.dtype.kind != "u" or words.dtype.itemsize != 2:
        raise TypeError(f"EVT 3.0 words: expected a 1-D uint16 array, got {words.dtype} of shape {words.shape}")
    words = np.ascontiguousarray(words, dtype=np.uint16)
    start = 0
    if not state.started:
        start = int(_first_time_high(words))
        if start < 0:
            return np.empty(0, dtype=EVENT_DTYPE)
        state.started, state.time_high = True, int(words[start] & 0xFFF)
        state.time = state.time_high << 12
    carried = (state.time_high, state.wraps, state.time, state.y, state.base_x, state.polarity)
    events = np.empty(int(_count_events(words, start, _EVENTS_OF_WORD)), dtype=EVENT_DTYPE)
    n, *carried = _decode_events(words, start, events, *map(np.int64, carried), _LOWEST_BIT)
    assert n == len(events)
    state.time_high, state.wraps, state.time, state.y, state.base_x, state.polarity = map(int, carried)
    return events


use_numba = True  # module switch: False forces the numpy decoder (tests compare both)


def numba_available() -> bool:
    """Whether ``decode_evt3`` runs the compiled decoder (numba installed and not switched off)."""
    return numba is not None and use_numba


def decode_evt3(words: np.ndarray, state: Evt3State) -> Events:
    """Decode a block of EVT 3.0 words (N,) uint16 into events (in word order), updating ``state``.

    The compiled decoder when numba is available, else the numpy one (``decode_evt3_numpy``, whose
    docstring gives the time rule); the same events either way. Input that is not a 1-D array of
    16-bit unsigned words goes to the numpy decoder, which defines what happens to it.
    """
    if numba_available() and isinstance(words, np.ndarray) and words.ndim == 1 and words.dtype.kind == "u" \
            and words.dtype.itemsize == 2:
        return decode_evt3_numba(words, state)
    return decode_evt3_numpy(words, state)
