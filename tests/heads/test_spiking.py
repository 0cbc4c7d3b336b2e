"""Spiking head: spikes happen, tau learns, the leak follows dt, dt = 0 is a no-op, membranes stay bounded."""
from __future__ import annotations

import math

import pytest
import torch

from heads import HeadError, create_head, head_entry

B, T, D, H = 4, 30, 16, 32


def _head(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return create_head("spiking", D, hidden_size=H, **kwargs)


def _silence_biases(head) -> None:
    """Zero every bias so that a zero input gives zero currents (LIF biases start at zero already)."""
    with torch.no_grad():
        for layer in [*head.layers, head.readout]:
            layer.bias.zero_()


def test_shapes_state_and_registry():
    head = _head(num_layers=3)
    assert head.out_features == H and head_entry("spiking").time_aware and head.time_aware
    y, state = head(torch.randn(B, T, D), torch.ones(B, T))
    assert y.shape == (B, T, H)
    assert len(state) == 4 and all(s.shape == (B, H) for s in state)
    assert not hasattr(head, "mem")  # no hidden snntorch state on the module


def test_layers_fire_at_a_reasonable_rate():
    head = _head()
    x = torch.randn(B, T, D)
    rates = head.spike_rates(x, torch.ones(B, T))
    assert rates.shape == (2,)
    assert ((rates > 0.01) & (rates < 0.6)).all(), rates
    # A masked step counts as no step.
    mask = torch.zeros(B, T, dtype=torch.bool)
    assert head.spike_rates(x, mask=mask).sum() == 0


@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "atan"])
def test_every_parameter_and_tau_gets_a_gradient(surrogate):
    head = _head(surrogate=surrogate)
    dt = torch.rand(B, T) * 3
    dt[:, ::4] = 0.0  # the infinite threshold of a dt = 0 step must give zero, not NaN, gradients
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 20:] = False
    y, state = head(torch.randn(B, T, D), dt, mask=mask)
    (y.square().mean() + state[-1].sum()).backward()
    for name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
        assert torch.isfinite(param.grad).all(), name
    assert (head.raw_tau.grad != 0).float().mean() > 0.5  # most neurons' tau learns


def test_tau_is_positive_and_starts_around_tau_init():
    head = _head(tau_init=3.0, tau_min=0.1)
    tau = head.tau()
    assert tau.shape == (3, H)
    assert tau.min() >= 1.5 - 1e-5 and tau.max() <= 6.0 + 1e-5
    with torch.no_grad():
        head.raw_tau.fill_(-100.0)  # whatever training does, tau stays above tau_min
    assert (head.tau() >= 0.1).all()


def test_dt_zero_leaves_the_state_unchanged_and_repeats_y():
    head = _head()
    x = torch.randn(B, 10, D) * 3
    y, state = head(x, torch.ones(B, 10))
    y0, state0 = head.step(torch.randn(B, D) * 5, torch.zeros(B, 1), state)
    for a, b in zip(state0, state):
        assert torch.equal(a, b)
    assert torch.equal(y0, y[:, -1])


def test_decay_follows_dt():
    """With no input, a sub-threshold membrane decays as exp(-dt / tau): faster for a larger dt."""
    head = _head(num_layers=1)
    _silence_biases(head)
    state = tuple(torch.full((3, H), 0.5) for _ in range(2))
    dt = torch.tensor([[0.5], [2.0], [1e5]])
    y, (mem, readout) = head.step(torch.zeros(3, D), dt, state)
    tau = head.tau().detach()
    torch.testing.assert_close(mem, 0.5 * torch.exp(-dt / tau[0]))
    torch.testing.assert_close(y, 0.5 * torch.exp(-dt / tau[1]))
    assert (mem[0] > mem[1]).all() and (mem[2] == 0).all()  # a huge gap forgets everything


def test_membrane_tracks_a_constant_input_and_stays_bounded():
    """The membrane is a moving average of its current: a sub-threshold current is its fixed point."""
    head = _head(num_layers=1)
    _silence_biases(head)
    x = torch.randn(1, D)
    current = head.layers[0](x).detach()
    # Scale the input so every neuron's current sits below the threshold: no spikes.
    x = x * 0.9 / current.abs().max()
    current = head.layers[0](x).detach()
    state = head.init_state(1)
    for dt in [1e-4] * 50 + [0.7] * 100 + [30.0]:
        _, state = head.step(x, torch.tensor([[dt]]), state)
        assert state[0].abs().max() <= current.abs().max() + 1e-6
    torch.testing.assert_close(state[0], current)


def test_long_irregular_stream_stays_finite():
    head = _head()
    state = None
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(2, 50, D, generator=g) * 50
            dt = torch.rand(2, 50, generator=g) ** 6 * 1e5
            dt[:, ::3] = 0.0
            y, state = head(x, dt, state)
            assert torch.isfinite(y).all() and all(torch.isfinite(s).all() for s in state)
            # Bounded by the currents: at most a few thresholds beyond the largest input drive.
            assert max(s.abs().max() for s in state) < 1e4


def test_mask_is_exactly_a_zero_dt_step():
    head = _head()
    x, dt = torch.randn(B, T, D), torch.rand(B, T) * 2
    mask = torch.rand(B, T, generator=torch.Generator().manual_seed(6)) > 0.3
    y_masked, s_masked = head(x, dt, mask=mask)
    y_zero_dt, s_zero_dt = head(x, torch.where(mask, dt, 0.0))
    assert (y_masked[~mask] == 0).all()
    assert torch.equal(y_masked[mask], y_zero_dt[mask])
    for a, b in zip(s_masked, s_zero_dt):
        assert torch.equal(a, b)


def test_forward_matches_step_loop_in_float64():
    head = _head().double()
    x, dt = torch.randn(B, T, D, dtype=torch.float64), torch.rand(B, T, dtype=torch.float64) * 2
    y, state = head(x, dt)
    y_loop, state_loop = head.step_loop(x, dt)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, y_loop)
    for a, b in zip(state, state_loop):
        torch.testing.assert_close(a, b)


def test_threshold_scales_with_the_weights():
    """The initial weights are scaled to the threshold, so activity does not depend on it."""
    x = torch.randn(B, T, D)
    low, high = _head(threshold=0.25).spike_rates(x), _head(threshold=4.0).spike_rates(x)
    torch.testing.assert_close(low, high)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"surrogate": "sigmoid"}, "fast_sigmoid, atan"),
        ({"threshold": 0}, "threshold"),
        ({"num_layers": 0}, "num_layers"),
        ({"hidden_size": 8.0}, "hidden_size"),
        ({"tau_init": 0.05, "tau_min": 0.05}, "tau_init"),
        ({"slope": -1.0}, "slope"),
        ({"beta": 0.9}, "beta"),
    ],
)
def test_bad_options_raise_head_error(kwargs, words):
    with pytest.raises(HeadError, match=words):
        create_head("spiking", D, **kwargs)


def test_slope_reaches_the_surrogate():
    """A sharper surrogate passes less gradient from neurons far from the threshold."""
    x, dt = torch.randn(B, T, D), torch.ones(B, T)
    norms = []
    for slope in (1.0, 100.0):
        head = _head(slope=slope)
        head(x, dt)[0].square().sum().backward()
        norms.append(head.layers[0].weight.grad.norm().item())
    assert norms[0] > norms[1] > 0 and math.isfinite(norms[0])
