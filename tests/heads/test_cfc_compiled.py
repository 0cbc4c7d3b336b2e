"""The cfc head's compiled training parts (heads.cfc.compiled): the fold of the weights and the
step loops on MKL's sgemm, against the torch ops they replace and the float64 plain math.

Shapes: B batch, T time, D input features, N state size, U backbone units.
"""
import pytest
import torch

from heads import create_head
from heads.cfc import compiled, kernels

D = 5
needs_numba = pytest.mark.skipif(not compiled.available(), reason="numba is not installed")
needs_sgemm = pytest.mark.skipif(compiled.sgemm() is None, reason="torch has no MKL sgemm here (the torch ops serve)")


def head_pair(**kwargs):
    """The same head in float32 (the compiled paths) and float64 (the torch ops)."""
    torch.manual_seed(0)
    head = create_head("cfc", D, hidden_size=kwargs.pop("hidden_size", 8), backbone_units=kwargs.pop("backbone_units", 12),
                       **kwargs).eval()
    wide = create_head("cfc", D, hidden_size=head.hidden_size, backbone_units=12, **kwargs).double().eval()
    wide.load_state_dict(head.state_dict())
    return head, wide


def step_inputs(batch, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, D, generator=g, dtype=torch.float64)
    dt = 0.05 + 2 * torch.rand(batch, steps, generator=g, dtype=torch.float64)
    h0 = 0.5 * torch.randn(batch, 8, generator=g, dtype=torch.float64)
    return x, dt, h0


def train_step(head, x, dt, h0, dtype):
    """Outputs and the gradients of a fixed loss for x, dt, h0 and every parameter."""
    x, dt, h0 = (t.to(dtype).requires_grad_() for t in (x, dt, h0))
    y, h = head(x, dt, h0)
    weights = torch.linspace(-1, 1, y.numel(), dtype=dtype).view_as(y)
    loss = (y * weights).sum() + (h ** 2).sum()
    grads = torch.autograd.grad(loss, [x, dt, h0, *head.parameters()])
    return [y.detach(), h.detach(), *grads]


def spy(monkeypatch) -> dict:
    """Counts the calls of the compiled loops that ran."""
    calls = {"forward": 0, "backward": 0}
    for name, key in (("forward_loop", "forward"), ("backward_loop", "backward")):
        real = getattr(compiled, name)

        def counted(*args, _real=real, _key=key):
            calls[_key] += 1
            return _real(*args)

        monkeypatch.setattr(compiled, name, counted)
    return calls


FOLD_CONFIGS = [dict(mode=m, backbone_layers=k) for m in ("default", "no_gate", "pure") for k in (0, 1, 2)]
FOLD_CONFIGS += [dict(mixed_memory=True), dict(mode="no_gate", mixed_memory=True, backbone_layers=0)]


@needs_numba
@pytest.mark.parametrize("kwargs", FOLD_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("dropout", [False, True], ids=["plain", "dropout"])
def test_compiled_fold_matches_the_torch_fold(kwargs, dropout):
    """Folded weights, forward-ready weights and the gradient map agree with kernels.fold /
    prepare / unfold_grads to float32 rounding."""
    head, _ = head_pair(**kwargs)
    raw, masks = head._raw_params(), head._masks()
    assert compiled.applies(head.plan, masks, raw)
    with torch.no_grad():
        expected = kernels.fold(head.plan, raw, masks, dropout)
        expected_prep = kernels.prepare(head.plan, expected, D)
        params, prep = compiled.fold_prepare(head.plan, raw, dropout, D)
    assert len(params) == len(expected)
    for got, want in zip(params, expected):
        torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-6)
    for got, want in zip(prep.first[0] + tuple(prep.ws_t[0]) + tuple(prep.bs[0]),
                         expected_prep.first[0] + tuple(expected_prep.ws_t[0]) + tuple(expected_prep.bs[0])):
        torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-6)
    if head.mixed_memory:
        for got, want in zip(prep.lstm, expected_prep.lstm):
            torch.testing.assert_close(got, want)
    g = torch.Generator().manual_seed(3)
    grads = [torch.randn(p.shape, generator=g) for p in expected]
    for got, want in zip(compiled.unfold(head.plan, raw, dropout, grads),
                         kernels.unfold_grads(head.plan, raw, masks, dropout, grads)):
        torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-5)


def test_wired_and_float64_heads_keep_the_torch_fold():
    wired = create_head("cfc", D, wiring="autoncp", hidden_size=12)
    assert not compiled.applies(wired.plan, wired._masks(), wired._raw_params())
    dense = create_head("cfc", D, hidden_size=8).double()
    assert not compiled.applies(dense.plan, dense._masks(), dense._raw_params())


@needs_numba
@needs_sgemm
@pytest.mark.parametrize("mode", ["default", "no_gate"])
@pytest.mark.parametrize("batch,steps", [(3, 7), (40, 30)], ids=["one_block", "two_blocks"])
def test_compiled_loops_match_the_float64_math(monkeypatch, mode, batch, steps):
    """A training step on the compiled loops (float32) against the torch ops in float64: outputs,
    final state and the gradients for x, dt, h0 and every parameter. 40 x 30 rows walk the
    backward in two blocks (1,024 rows each at most)."""
    calls = spy(monkeypatch)
    head, wide = head_pair(mode=mode)
    x, dt, h0 = step_inputs(batch, steps)
    got = train_step(head, x, dt, h0, torch.float32)
    assert calls == {"forward": 1, "backward": 2 if batch * steps > kernels._BLOCK_ROWS else 1}
    want = train_step(wide, x, dt, h0, torch.float64)
    for a, b in zip(got, want):
        scale = b.abs().max().item()
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=2e-5 * max(1.0, scale))


@needs_numba
@needs_sgemm
@pytest.mark.parametrize("steps", [1, 9])
def test_compiled_inference_loop_matches_the_float64_math(monkeypatch, steps):
    """Without autograd the forward loop reuses one heads buffer for every step."""
    calls = spy(monkeypatch)
    head, wide = head_pair()
    x, dt, h0 = step_inputs(4, steps)
    with torch.no_grad():
        y, h = head(x.float(), dt.float(), h0.float())
        y_ref, h_ref = wide(x, dt, h0)
    assert calls["forward"] == 1
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(h.double(), h_ref, rtol=1e-5, atol=2e-6)


@needs_numba
def test_without_sgemm_the_torch_loops_serve_with_the_same_results(monkeypatch):
    head, _ = head_pair()
    x, dt, h0 = step_inputs(6, 11)
    fast = train_step(head, x, dt, h0, torch.float32)
    monkeypatch.setattr(compiled, "sgemm", lambda: None)
    calls = spy(monkeypatch)
    slow = train_step(head, x, dt, h0, torch.float32)
    assert calls == {"forward": 0, "backward": 0}
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@needs_numba
@needs_sgemm
def test_masked_sequences_keep_the_torch_loops(monkeypatch):
    """A padding mask carries the state through masked steps: the torch loops serve it."""
    calls = spy(monkeypatch)
    head, wide = head_pair()
    x, dt, h0 = step_inputs(2, 5)
    mask = torch.tensor([[True, True, False, True, True], [True, False, True, True, True]])
    y, _ = head(x.float(), dt.float(), h0.float(), mask)
    y.sum().backward()
    assert calls == {"forward": 0, "backward": 0}
    torch.testing.assert_close(y.detach().double(), wide(x, dt, h0, mask)[0].detach(), rtol=1e-5, atol=2e-6)
