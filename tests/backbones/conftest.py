"""Shared fixtures of the backbone tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_seed():
    """Seed, and run on one thread: on a shared, busy CPU, OpenMP threads spin-waiting for each
    other made these tests several times slower, and the tests measure behaviour, not speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _calibrate(net: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Set every batch norm's running statistics to those of ``x`` (N, C, H, W), then eval mode.

    A freshly built network in eval mode uses mean 0, variance 1, and some (MobileNetV3) then
    shrink activations to ~1e-8, where any comparison with an absolute tolerance passes vacuously.
    """
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
    net.train()
    with torch.no_grad():
        net(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return net.eval()


@pytest.fixture
def calibrate():
    """``calibrate(net, x)``: batch norm statistics from ``x``, eval mode (see ``_calibrate``)."""
    return _calibrate


def _assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-4) -> None:
    """``actual == expected`` up to ``tol`` times the largest magnitude of ``expected``."""
    scale = expected.abs().max().clamp_min(1e-30)
    torch.testing.assert_close(actual / scale, expected / scale, atol=tol, rtol=0)


@pytest.fixture
def assert_close_scaled():
    """``assert_close_scaled(actual, expected, tol=1e-4)``, a tolerance relative to the scale."""
    return _assert_close_scaled
