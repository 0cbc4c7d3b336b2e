"""numba where it is installed: the heads' compiled kernels are optional.

Each kernel module imports ``numba`` from here (None without it) and decorates with ``jit``, which
leaves the function as plain Python when numba is missing; the module then takes its torch path.
A module reads its own ``numba`` name, so a test can switch one module's compiled path off.
"""
from __future__ import annotations

try:
    import numba
except ImportError:
    numba = None


def jit(**options):
    """``numba.njit(**options)``, or no decorator at all without numba."""
    if numba is None:
        return lambda func: func
    return numba.njit(**options)
