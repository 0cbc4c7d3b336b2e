"""Dense representations of an event window: voxel grid, event histogram, time surface.

Every function takes a canonical event array (``data.events``; tonic arrays are converted) and a
sensor size ``(W, H)`` and returns a new ``float32`` numpy array of shape ``(C, H, W)``; turning it
into a tensor is the caller's business. Inputs are never modified.

Channel layout. ``polarity`` picks how ON and OFF events enter the C channels:

- ``"signed"``: one channel group, ON events count +1 and OFF events -1 (C = bins);
- ``"split"``: two channel groups, OFF first then ON (channel = p * bins + bin, C = 2 * bins);
- ``"merged"``: one channel group, every event counts +1 (C = bins).

Empty input gives zeros of the right shape (an empty duration window is normal in a stream), unless
the caller passes ``allow_empty=False``, which makes it a DataError. Events outside the sensor, or
outside an explicit ``[t_start, t_end]``, are a DataError naming the first offending event.

The scatter kernels are compiled with numba when it is installed and fall back to numpy otherwise
(``kernels``; its ``use_numba`` switches numba off). Both accumulate in float64 and round to
float32 once, at the end.

Modules: ``builtin`` (the ``to_*`` functions and the configured classes that hold their options),
``registry`` (what a ``Representation`` is, and the registry by name), ``normalize``, ``options``
(shared option values and checks), ``kernels`` and ``numba_kernels``.
"""
from data.representations.options import NORMALIZATIONS, POLARITY_MODES, TIME_SURFACE_POLARITY
from data.representations.normalize import normalize_grid
from data.representations.kernels import numba_available
from data.representations.registry import (
    Representation,
    as_representation,
    create_representation,
    list_representations,
    register_representation,
)
from data.representations.builtin import (  # importing it registers the built-in representations
    EventHistogram,
    TimeSurface,
    VoxelGrid,
    to_event_histogram,
    to_time_surface,
    to_voxel_grid,
)

__all__ = [
    "NORMALIZATIONS",
    "POLARITY_MODES",
    "TIME_SURFACE_POLARITY",
    "EventHistogram",
    "Representation",
    "TimeSurface",
    "VoxelGrid",
    "as_representation",
    "create_representation",
    "list_representations",
    "normalize_grid",
    "numba_available",
    "register_representation",
    "to_event_histogram",
    "to_time_surface",
    "to_voxel_grid",
]
