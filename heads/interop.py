"""Build our heads from modules of the reference library ncps, copying their weights.

ncps is not a dependency: modules are recognised by class name and read through their attributes,
so ``heads`` never imports ncps. Each liquid head module registers a converter for the ncps classes
it can stand in for.

ncps 1.0.1's ``CfC``/``LTC`` wrappers mishandle batched ``timespans`` (they squeeze the time to (B,));
compare against ncps by driving its *cells* with the time shaped (B, 1).
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from heads._registry import HeadError
from heads.base import TemporalHead

_CONVERTERS: dict[str, Callable[[nn.Module], TemporalHead]] = {}


def register_ncps_converter(*class_names: str) -> Callable:
    """Decorator: ``fn(ncps_module) -> TemporalHead`` handles the ncps classes named."""

    def decorate(fn: Callable[[nn.Module], TemporalHead]) -> Callable[[nn.Module], TemporalHead]:
        for name in class_names:
            _CONVERTERS[name] = fn
        return fn

    return decorate


def from_ncps(module: nn.Module) -> TemporalHead:
    """Our head equivalent to an ncps ``CfCCell``, ``WiredCfCCell``, ``LTCCell``, ``CfC`` or ``LTC``.

    The weights are copied, so for the same inputs and per-sample elapsed times the outputs agree
    (to float32 rounding). The returned head is in the same train/eval mode as ``module``.
    """
    name = type(module).__name__
    try:
        convert = _CONVERTERS[name]
    except KeyError:
        known = ", ".join(sorted(_CONVERTERS))
        raise HeadError(f"from_ncps: cannot convert a {name}; supported ncps classes: {known}") from None
    head = convert(module)
    head.train(module.training)
    return head
