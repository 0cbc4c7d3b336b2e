"""The temporal-head contract (heads/base.py's docstring), for every registered head.

Parametrized over ``list_heads()``: a newly registered head is held to the contract for free.
Shapes: B batch, T time, D input features, H output features.
"""
import math

import pytest
import torch

from heads import HeadError, create_head, head_entry, list_heads

D = 6
TOL = dict(rtol=1e-5, atol=1e-6)


def build(name: str, dtype=torch.float64, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    head = create_head(name, D, **kwargs).to(dtype)
    return head.eval()  # no dropout: every comparison below is exact up to rounding


def inputs(batch: int, steps: int, dtype=torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, D, generator=g, dtype=dtype)        # (B, T, D)
    dt = 0.1 + 2 * torch.rand(batch, steps, generator=g, dtype=dtype)  # (B, T)
    return x, dt


def assert_state_close(a, b, **tol):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for u, v in zip(a, b):
            torch.testing.assert_close(u, v, **tol)
    else:
        torch.testing.assert_close(a, b, **tol)


def select(state, index):
    """The state of the samples ``index`` (batch-first)."""
    if isinstance(state, tuple):
        return tuple(s[index] for s in state)
    return state[index]


@pytest.fixture(params=list_heads())
def name(request):
    return request.param


def test_registry_entry_matches_head(name):
    head = build(name)
    entry = head_entry(name)
    assert head.in_features == D
    assert head.time_aware == entry.time_aware
    assert entry.description, f"{name} has no description"
    y, state = head(*inputs(2, 3))
    assert y.shape == (2, 3, head.out_features)


def test_streaming_in_chunks_equals_one_pass(name):
    head = build(name)
    x, dt = inputs(3, 11)
    y_full, s_full = head(x, dt)
    y_a, s_a = head(x[:, :4], dt[:, :4])
    y_b, s_b = head(x[:, 4:], dt[:, 4:], state=s_a)
    torch.testing.assert_close(torch.cat([y_a, y_b], dim=1), y_full, **TOL)
    assert_state_close(s_b, s_full, **TOL)


def test_step_agrees_with_forward(name):
    head = build(name)
    x, dt = inputs(3, 7)
    y_full, s_full = head(x, dt)
    state = head.init_state(3, dtype=x.dtype)
    for t in range(x.shape[1]):
        y, state = head.step(x[:, t], dt[:, t : t + 1], state)
        torch.testing.assert_close(y, y_full[:, t], **TOL)
    assert_state_close(state, s_full, **TOL)


def test_batch_independence(name):
    head = build(name)
    x, dt = inputs(4, 6)
    y, state = head(x, dt)
    y_alone, state_alone = head(x[2:3], dt[2:3])
    torch.testing.assert_close(y[2:3], y_alone, **TOL)
    assert_state_close(select(state, slice(2, 3)), state_alone, **TOL)
    # Changing the other samples changes nothing for sample 2.
    x2, dt2 = x.clone(), dt.clone()
    x2[[0, 1, 3]] = torch.randn_like(x2[[0, 1, 3]]) * 5
    dt2[[0, 1, 3]] = 7.0
    torch.testing.assert_close(head(x2, dt2)[0][2], y[2], **TOL)


def test_padded_clips_equal_unpadded(name):
    head = build(name)
    lengths = [9, 5, 1]
    x, dt = inputs(3, 9)
    mask = torch.arange(9)[None, :] < torch.tensor(lengths)[:, None]  # (B, T) right-padded
    x = torch.where(mask[..., None], x, torch.full_like(x, 1e3))     # garbage in the padding
    y, state = head(x, dt, mask=mask)
    for b, length in enumerate(lengths):
        y_b, s_b = head(x[b : b + 1, :length], dt[b : b + 1, :length])
        torch.testing.assert_close(y[b : b + 1, :length], y_b, **TOL)
        assert_state_close(select(state, slice(b, b + 1)), s_b, **TOL)
        assert torch.all(y[b, length:] == 0), "masked steps must output zero"


def test_masked_steps_leave_state_unchanged(name):
    """A mask with holes equals running only the valid steps."""
    head = build(name)
    x, dt = inputs(2, 8)
    mask = torch.tensor([[1, 0, 1, 1, 0, 0, 1, 1], [0, 1, 1, 0, 1, 0, 1, 0]], dtype=torch.bool)
    y, state = head(x, dt, mask=mask)
    for b in range(2):
        keep = mask[b]
        y_b, s_b = head(x[b : b + 1, keep], dt[b : b + 1, keep])
        torch.testing.assert_close(y[b, keep], y_b[0], **TOL)
        assert_state_close(select(state, slice(b, b + 1)), s_b, **TOL)
    # A fully masked sequence returns the initial state untouched.
    start = head.init_state(2, dtype=x.dtype)
    start = tuple(s + 0.5 for s in start) if isinstance(start, tuple) else start + 0.5
    _, after = head(x, dt, state=start, mask=torch.zeros(2, 8, dtype=torch.bool))
    assert_state_close(after, start, rtol=0, atol=0)


def test_every_parameter_and_the_input_get_a_gradient(name):
    """Gradients reach every parameter, and the input too: the backbone trains through the head."""
    head = build(name, dtype=torch.float32).train()
    x, dt = inputs(4, 6, dtype=torch.float32)
    x.requires_grad_(True)
    y, _ = head(x, dt)
    (y**2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, f"{name}: no gradient reaches the input"
    for pname, p in head.named_parameters():
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"


def test_time_awareness_matches_registry(name):
    """Time-aware heads respond to dt; the others are exactly blind to it."""
    head = build(name)
    x, dt = inputs(2, 5)
    y_a, _ = head(x, dt)
    y_b, _ = head(x, dt * 3)
    if head.time_aware:
        assert not torch.allclose(y_a, y_b), f"{name} is registered time-aware but ignores dt"
    else:
        torch.testing.assert_close(y_a, y_b, rtol=0, atol=0)


def test_default_dt_and_state(name):
    head = build(name)
    x, _ = inputs(2, 4)
    y_default, _ = head(x)
    y_ones, _ = head(x, torch.ones(2, 4, dtype=x.dtype))
    torch.testing.assert_close(y_default, y_ones, rtol=0, atol=0)


def test_float32_step_state_is_float32(name):
    head = build(name, dtype=torch.float32)
    state = head.init_state(3)
    y, state = head.step(torch.randn(3, D), torch.ones(3, 1), state)
    assert y.dtype == torch.float32 and y.shape == (3, head.out_features)


def _extreme_dt(batch: int, steps: int, g: torch.Generator) -> torch.Tensor:
    """dt from exactly 0 up to 1e4 normalised units (minutes at a 30 fps time scale), log-uniform."""
    dt = torch.exp(torch.empty(batch, steps).uniform_(math.log(1e-6), math.log(1e4), generator=g))
    dt[torch.rand(batch, steps, generator=g) < 0.1] = 0.0
    return dt


def _assert_finite_stream(name: str, steps: int, chunk: int) -> None:
    torch.manual_seed(0)
    head = create_head(name, D, **({} if name == "none" else {"hidden_size": 16})).eval()
    g = torch.Generator().manual_seed(3)
    state = head.init_state(4)
    with torch.no_grad():
        for start in range(0, steps, chunk):
            n = min(chunk, steps - start)
            x = 3 * torch.randn(4, n, D, generator=g)
            y, state = head(x, _extreme_dt(4, n, g), state=state)
            assert torch.isfinite(y).all(), f"{name}: non-finite output by step {start + n}"
    leaves = state if isinstance(state, tuple) else (state,)
    for leaf in leaves:
        assert torch.isfinite(leaf).all(), f"{name}: non-finite state after {steps} steps"


def test_state_stays_finite_over_a_long_stream(name):
    _assert_finite_stream(name, steps=20_000, chunk=5_000)


@pytest.mark.slow
def test_state_stays_finite_over_a_million_steps(name):
    _assert_finite_stream(name, steps=1_000_000, chunk=50_000)


def test_unknown_head_lists_the_choices():
    with pytest.raises(HeadError, match="unknown head 'nope'.*cfc"):
        create_head("nope", 4)


def test_unknown_option_names_the_head(name):
    with pytest.raises(HeadError, match=name):
        create_head(name, 4, no_such_option=1)


def test_duplicate_registration_is_refused():
    from heads import register_head

    with pytest.raises(HeadError, match="already registered"):
        register_head(list_heads()[0], time_aware=False)(lambda d: None)
