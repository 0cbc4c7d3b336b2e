"""The cfc head: every mode and option, its fused kernel against the plain step loop, wirings,
and the conversion from ncps 1.0.1. The generic head contract is in test_contract.py.

Shapes: B batch, T time, D input features, H output features, N state size.
"""
import copy
import warnings

import numpy as np
import pytest
import torch

from heads import HeadError, create_head, create_wiring, from_ncps
from heads.cfc import kernels, streaming
from heads.base import TemporalHead

D = 5

CONFIGS = [
    dict(),
    dict(mode="no_gate"),
    dict(mode="pure"),
    dict(backbone_layers=0),
    dict(backbone_layers=2, backbone_units=12),
    dict(mode="pure", backbone_layers=2, backbone_units=12),
    dict(mixed_memory=True),
    dict(mode="no_gate", mixed_memory=True, backbone_layers=0),
    dict(wiring="autoncp", hidden_size=16, wiring_kwargs=dict(output_size=3)),
    dict(wiring="autoncp", hidden_size=16, mode="pure", mixed_memory=True),
    dict(wiring="autoncp", hidden_size=16, mode="no_gate"),
    dict(wiring="random", hidden_size=9, wiring_kwargs=dict(output_size=4, sparsity=0.6)),
    dict(wiring="fully_connected", hidden_size=7),
]
IDS = [",".join(f"{k}={v}" for k, v in c.items() if k != "wiring_kwargs") or "default" for c in CONFIGS]


def build(dtype=torch.float64, **kwargs) -> TemporalHead:
    torch.manual_seed(0)
    kwargs.setdefault("hidden_size", 8)
    return create_head("cfc", D, **kwargs).to(dtype).eval()


def leaves(state) -> list:
    return list(state) if isinstance(state, tuple) else [state]


def random_state(head, batch: int, dtype=torch.float64):
    """A non-trivial start state that requires grad (so dh0 is checked too)."""
    g = torch.Generator().manual_seed(5)
    state = tuple(0.5 * torch.randn(s.shape, generator=g, dtype=dtype) for s in leaves(head.init_state(batch)))
    state = tuple(s.requires_grad_() for s in state)
    return state if len(state) == 2 else state[0]


def inputs(batch: int, steps: int, dtype=torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, D, generator=g, dtype=dtype).requires_grad_()
    dt = (0.05 + 2 * torch.rand(batch, steps, generator=g, dtype=dtype)).requires_grad_()
    return x, dt


@pytest.mark.parametrize("kwargs", CONFIGS, ids=IDS)
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_fused_kernel_matches_the_plain_step_loop(kwargs, masked):
    """Outputs, final state and every gradient (parameters, x, dt, start state) agree."""
    head = build(**kwargs)
    x, dt = inputs(3, 7)
    state = random_state(head, 3)
    mask = torch.rand(3, 7, generator=torch.Generator().manual_seed(2)) > 0.3 if masked else None
    fast = head(x, dt, state, mask)
    slow = head.step_loop(x, dt, state, mask)  # loops head.step -> reference_step
    for a, b in zip([fast[0], *leaves(fast[1])], [slow[0], *leaves(slow[1])]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    g = torch.Generator().manual_seed(3)
    weights = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in [fast[0], *leaves(fast[1])]]
    wrt = [x, dt, *leaves(state), *head.parameters()]

    def loss(out):
        return sum((w * t).sum() for w, t in zip(weights, [out[0], *leaves(out[1])]))

    for a, b in zip(torch.autograd.grad(loss(fast), wrt), torch.autograd.grad(loss(slow), wrt)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


GRADCHECK = [dict(hidden_size=3, backbone_units=4), dict(hidden_size=3, backbone_units=4, mode="pure"),
             dict(hidden_size=3, backbone_layers=0, mode="no_gate", mixed_memory=True),
             dict(wiring="autoncp", hidden_size=8, mode="default")]


@pytest.mark.parametrize("kwargs", GRADCHECK, ids=["default", "pure", "no_gate_mixed", "autoncp"])
def test_hand_written_backward_passes_gradcheck(kwargs):
    """Finite differences in float64, with a padding mask and grads for x, dt and the state."""
    head = build(**kwargs)
    x, dt = inputs(2, 3)
    state = leaves(random_state(head, 2))
    mask = torch.tensor([[True, False, True], [True, True, False]])
    names = [name for name, _ in head.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in head.parameters()]

    def run(x, dt, *tensors):
        start = tuple(tensors[: len(state)]) if len(state) == 2 else tensors[0]
        weights = dict(zip(names, tensors[len(state) :]))
        y, s = torch.func.functional_call(head, weights, (x, dt, start, mask))
        return (y, *leaves(s))

    assert torch.autograd.gradcheck(run, (x, dt, *state, *params), eps=1e-6, atol=1e-6)


def test_dropout_kernel_passes_gradcheck():
    """With backbone dropout the kernel takes fixed masks; check its backward numerically."""
    head = create_head("cfc", D, hidden_size=3, backbone_units=4, backbone_layers=2, backbone_dropout=0.4).double()
    torch.manual_seed(0)
    masks = head._dropout_masks(3, 2, torch.zeros(1, dtype=torch.float64))
    assert masks is not None and any((m[1] == 0).any() for cell in masks for m in cell)
    x, dt = inputs(2, 3)
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    params = tuple(p.detach().requires_grad_() for p in head._raw_params())

    def run(x, dt, h0, *params):
        return kernels.CfCSequence.apply(head.plan, masks, head._masks(), x, dt, None, h0, None, *params)

    assert torch.autograd.gradcheck(run, (x, dt, h0, *params), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(backbone_layers=0), dict(backbone_layers=2, mode="pure"),
                                    dict(backbone_layers=3, mode="no_gate"), dict(wiring="autoncp", hidden_size=12)])
@pytest.mark.parametrize("dropout", [False, True])
def test_weight_folding_backward_matches_autograd(kwargs, dropout):
    """The kernels fold the LeCun constants into the weights; their hand-written backward maps
    gradients back to the parameters exactly as autograd would."""
    head = build(**kwargs)
    for layer in head.layers:
        raw = [p.detach().clone().requires_grad_() for p in layer.raw_params()]
        folded = kernels.fold_cell(head.mode, raw, layer.synapse_mask, dropout)
        g = torch.Generator().manual_seed(4)
        grads = [torch.randn(f.shape, generator=g, dtype=f.dtype) for f in folded]
        expected = torch.autograd.grad(folded, raw, grads)
        got = kernels.unfold_cell_grads(head.mode, [p.detach() for p in raw], layer.synapse_mask, dropout, grads)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_dropout_is_random_in_training_and_off_in_eval():
    head = create_head("cfc", D, hidden_size=6, backbone_dropout=0.5)
    x, dt = inputs(2, 4, dtype=torch.float32)
    head.train()
    assert not torch.equal(head(x, dt)[0], head(x, dt)[0])
    y, _ = head(x, dt)
    y.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())
    head.eval()
    torch.testing.assert_close(head(x, dt)[0], head.step_loop(x, dt)[0])


@pytest.mark.parametrize("kwargs", CONFIGS, ids=IDS)
def test_no_grad_paths_match_the_reference(kwargs):
    """Inference forward and streaming step (cached folded weights) equal the plain math."""
    head = build(**kwargs)
    x, dt = inputs(3, 6)
    x, dt = x.detach(), dt.detach()
    y_ref, s_ref = head.step_loop(x, dt)
    with torch.no_grad():
        y, s = head(x, dt)
        state, ys = head.init_state(3), []
        for t in range(6):
            y_t, state = head.step(x[:, t], dt[:, t : t + 1], state)
            ys.append(y_t)
    pairs = [(y, y_ref), (torch.stack(ys, 1), y_ref), *zip(leaves(s), leaves(s_ref)), *zip(leaves(state), leaves(s_ref))]
    for a, b in pairs:
        torch.testing.assert_close(a, b.detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
def test_python_fallback_of_the_compiled_loops_agrees(monkeypatch, masked):
    """The step loops are TorchScript-compiled when possible; as plain Python they give the same."""
    head = build(hidden_size=6)
    x, dt = inputs(3, 5)
    holes = [[True] * 5, [True, False, True, True, False], [False, True, True, True, True]]
    mask = torch.tensor(holes) if masked else None

    def run():
        y, h = head(x, dt, None, mask)
        return [y, h, *torch.autograd.grad((y.square().sum() + h.sum()), [x, dt, *head.parameters()])]

    compiled = run()
    monkeypatch.setattr(kernels, "loop_single", kernels.loop_single.python)
    monkeypatch.setattr(kernels, "backward_single", kernels.backward_single.python)
    for a, b in zip(run(), compiled):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_step_cache_follows_parameter_updates():
    head = build()
    x, dt = inputs(2, 1)
    x, dt = x[:, 0].detach(), dt.detach()
    state = head.init_state(2)
    with torch.no_grad():
        before, _ = head.step(x, dt, state)
        head.layers[0].heads.bias.add_(0.5)  # in place, as an optimizer does
        after, _ = head.step(x, dt, state)
    torch.testing.assert_close(after, head.reference_step(x, dt, state)[0].detach())
    assert not torch.allclose(before, after)
    head.float()  # dtype conversion replaces the data
    with torch.no_grad():
        y, _ = head.step(x.float(), dt.float(), head.init_state(2))
    assert y.dtype == torch.float32


def test_step_cache_follows_lstm_parameter_updates():
    head = build(mixed_memory=True)
    x, dt = inputs(2, 1)
    x, dt = x[:, 0].detach(), dt.detach()
    state = head.init_state(2)
    with torch.no_grad():
        head.step(x, dt, state)
        head.lstm_recurrent.weight.mul_(-1.0)
        head.lstm_input.bias.add_(0.3)
        y, _ = head.step(x, dt, (state[0] + 0.1, state[1]))
    torch.testing.assert_close(y, head.reference_step(x, dt, (state[0] + 0.1, state[1]))[0].detach())


def test_saved_buffers_survive_later_calls():
    """Scratch buffers are pooled across calls: a graph kept alive while the head runs again
    must still give the right gradients."""
    head = build()
    x1, dt1 = inputs(3, 6, seed=1)
    x2, dt2 = inputs(3, 6, seed=2)
    expected = torch.autograd.grad(head.step_loop(x1, dt1)[0].square().sum(), [x1, *head.parameters()])
    y1, _ = head(x1, dt1)
    for _ in range(3):  # other forward and backward passes in between
        head(x2, dt2)[0].sum().backward()
        with torch.no_grad():
            head(x2, dt2)
    got = torch.autograd.grad(y1.square().sum(), [x1, *head.parameters()])
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize("backward", [False, True], ids=["forward_only", "with_backward"])
def test_the_graph_is_freed_with_its_output(masked, backward):
    """No reference cycle through the saved buffers: dropping the output frees the graph at once."""
    import gc
    import weakref

    head = build()
    x, dt = inputs(2, 4)
    mask = torch.tensor([[True, True, False, True], [True, True, True, True]]) if masked else None
    gc.disable()  # only reference counting may free it
    try:
        y, h = head(x, dt, mask=mask)
        if backward:
            (y.sum() + h.sum()).backward()
        node = weakref.ref(y.grad_fn)
        del y, h
        assert node() is None
    finally:
        gc.enable()


def test_modifying_the_output_in_place_before_backward_is_refused():
    head = build()
    x, dt = inputs(2, 4)
    y, _ = head(x, dt)
    y.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_long_inference_runs_in_chunks():
    """Without autograd the kernel works through long streams in bounded chunks."""
    from heads.cfc.model import _CHUNK

    head = build(hidden_size=4, backbone_units=4)
    x, dt = inputs(1, _CHUNK + 9)
    y, state = head(x, dt)
    with torch.no_grad():
        y_ng, state_ng = head(x, dt)
    torch.testing.assert_close(y_ng, y.detach())
    torch.testing.assert_close(state_ng, state.detach())


@pytest.mark.parametrize("wiring", ["autoncp", "random"])
def test_left_out_synapses_stay_exactly_zero_after_training(wiring):
    head = create_head("cfc", D, hidden_size=16, wiring=wiring, mode="default", wiring_kwargs=dict(sparsity=0.6))
    optimizer = torch.optim.AdamW(head.parameters(), lr=0.1, weight_decay=0.1)
    x, dt = inputs(4, 5, dtype=torch.float32)
    for _ in range(3):
        optimizer.zero_grad()
        y, _ = head(x.detach(), dt.detach())
        (y**2).sum().backward()
        for layer in head.layers:
            left_out = layer.synapse_mask == 0
            assert left_out.any()
            assert torch.all(layer.heads.weight.grad[left_out] == 0)
        optimizer.step()
    for layer in head.layers:
        left_out = layer.synapse_mask == 0
        assert torch.all(layer.heads.weight[left_out] == 0)
        assert torch.all(layer.heads.weight[~left_out] != 0)


def test_wired_head_shapes_follow_the_wiring():
    wiring = create_wiring("autoncp", D, 20, output_size=5)
    head = create_head("cfc", D, wiring=wiring, mixed_memory=True)
    assert head.out_features == 5 and head.hidden_size == 20
    assert [len(layer) for layer in wiring.layers] == [layer.n for layer in head.layers]
    x, dt = inputs(2, 3, dtype=torch.float32)
    y, (h, c) = head(x, dt)
    assert y.shape == (2, 3, 5) and h.shape == c.shape == (2, 20)
    torch.testing.assert_close(y[:, -1], h[:, -5:])  # the motor neurons are the last layer


def test_pure_mode_stays_finite_for_extreme_dt():
    head = build(mode="pure", dtype=torch.float32)
    x = 3 * torch.randn(4, 50, D)
    dt = torch.cat([torch.zeros(4, 10), torch.full((4, 20), 1e6), torch.logspace(-6, 8, 20).expand(4, 20)], 1)
    y, state = head(x, dt.requires_grad_())
    y.sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(state).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


def test_state_dict_round_trip():
    head = build(wiring="autoncp", hidden_size=16, mixed_memory=True)
    torch.manual_seed(9)
    other = create_head("cfc", D, wiring="autoncp", hidden_size=16, mixed_memory=True).double().eval()
    other.load_state_dict(head.state_dict())
    x, dt = inputs(2, 4)
    torch.testing.assert_close(other(x, dt)[0], head(x, dt)[0])


@pytest.mark.parametrize("wiring", [None, "autoncp"])
def test_time_gate_bias_sets_the_gate_rows_only(wiring):
    options = dict(hidden_size=8) if wiring is None else dict(wiring=wiring, hidden_size=12)
    torch.manual_seed(0)
    plain = create_head("cfc", D, **options)
    torch.manual_seed(0)
    head = create_head("cfc", D, time_gate_bias=(1.5, -0.5), **options)
    for mine, theirs in zip(head.layers, plain.layers):
        n = mine.n
        assert torch.equal(mine.heads.bias[: 2 * n], theirs.heads.bias[: 2 * n])  # f1, f2 untouched
        assert torch.all(mine.heads.bias[2 * n: 3 * n] == 1.5) and torch.all(mine.heads.bias[3 * n:] == -0.5)
        assert torch.equal(mine.heads.weight, theirs.heads.weight)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="fast"), "unknown mode 'fast'.*default, no_gate, pure"),
        (dict(wiring="ncps"), "unknown wiring 'ncps'.*autoncp"),
        (dict(wiring_kwargs=dict(seed=1)), "wiring_kwargs needs wiring"),
        (dict(wiring="autoncp", backbone_layers=2), "do not apply to a wired cfc"),
        (dict(wiring=create_wiring("random", D, 6), hidden_size=7), "hidden_size=7 but the wiring has 6"),
        (dict(wiring=create_wiring("random", D + 1, 6)), "built for 6 inputs, not in_features=5"),
        (dict(hidden_size=0), "hidden_size must be a positive integer"),
        (dict(backbone_layers=-1), "backbone_layers must be an integer >= 0"),
        (dict(backbone_dropout=1.0), r"backbone_dropout must be in \[0, 1\)"),
        (dict(wiring="autoncp", hidden_size=16, wiring_kwargs=dict(sparsity=2.0)), "sparsity"),
        (dict(time_gate_bias=[1.0]), "time_gate_bias must be a pair"),
        (dict(mode="pure", time_gate_bias=[1.0, 0.0]), "time_gate_bias .* not 'pure'"),
    ],
)
def test_bad_options_raise_a_clear_error(kwargs, message):
    with pytest.raises(HeadError, match=message):
        create_head("cfc", D, **kwargs)


# ---------------------------------------------------------------------------------------------
# ncps 1.0.1: the cells driven with the time shaped (B, 1) (its wrappers squeeze it wrongly).
# ---------------------------------------------------------------------------------------------

NCPS_TOL = dict(rtol=1e-5, atol=1e-5)


def ncps_torch_and_wirings():
    """ncps is a dev dependency: skip (with the reason) when it is not installed."""
    return pytest.importorskip("ncps.torch"), pytest.importorskip("ncps.wirings")


def ncps_inputs(batch: int = 4, steps: int = 12):
    g = torch.Generator().manual_seed(7)
    return torch.randn(batch, steps, D, generator=g), 0.05 + 3 * torch.rand(batch, steps, generator=g)


def drive_ncps(cell, x, dt, state, lstm=None):
    """Run an ncps cell (and the wrapper's LSTM for mixed memory) step by step."""
    outputs = []
    h, c = state if lstm is not None else (state, None)
    for t in range(x.shape[1]):
        if lstm is not None:
            h, c = lstm(x[:, t], (h, c))
        y, h = cell(x[:, t], h, dt[:, t : t + 1])
        outputs.append(y)
    return torch.stack(outputs, 1), ((h, c) if lstm is not None else h)


def assert_agrees_with_ncps(ours, ncps_cell, state_size, lstm=None):
    x, dt = ncps_inputs()
    g = torch.Generator().manual_seed(8)
    start = 0.5 * torch.randn(4, state_size, generator=g)
    start = (start, 0.5 * torch.randn(4, state_size, generator=g)) if lstm is not None else start
    with torch.no_grad():
        y_ref, s_ref = drive_ncps(ncps_cell, x, dt, start, lstm)
    y, s = ours(x, dt, start)                                  # fused kernel (autograd on)
    with torch.no_grad():
        y_ng, _ = ours(x, dt, start)                            # inference path
        state, y_step = start, []
        for t in range(x.shape[1]):
            y_t, state = ours.step(x[:, t], dt[:, t : t + 1], state)
            y_step.append(y_t)
    for got in (y, y_ng, torch.stack(y_step, 1)):
        torch.testing.assert_close(got.detach(), y_ref, **NCPS_TOL)
    for a, b in zip(leaves(s), leaves(s_ref)):
        torch.testing.assert_close(a.detach(), b, **NCPS_TOL)


@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
@pytest.mark.parametrize("backbone_layers", [0, 1, 2])
def test_from_ncps_cfc_cell(mode, backbone_layers):
    nt, nw = ncps_torch_and_wirings()
    torch.manual_seed(0)
    cell = nt.CfCCell(D, 8, mode=mode, backbone_units=16, backbone_layers=backbone_layers).eval()
    ours = from_ncps(cell)
    assert ours.out_features == 8 and not ours.training
    assert_agrees_with_ncps(ours, cell, 8)


@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
def test_from_ncps_wired_cfc_cell_with_auto_ncp(mode):
    nt, nw = ncps_torch_and_wirings()
    torch.manual_seed(0)
    cell = nt.WiredCfCCell(D, nw.AutoNCP(16, 4), mode=mode)
    ours = from_ncps(cell)
    assert ours.out_features == 4 and ours.hidden_size == 16
    assert_agrees_with_ncps(ours, cell, 16)


@pytest.mark.parametrize("wired", [False, True], ids=["dense", "autoncp"])
@pytest.mark.parametrize("mixed", [False, True], ids=["plain", "mixed_memory"])
def test_from_ncps_cfc_wrapper(wired, mixed):
    nt, nw = ncps_torch_and_wirings()
    torch.manual_seed(0)
    units = nw.AutoNCP(16, 4) if wired else 8
    module = nt.CfC(D, units, mixed_memory=mixed, **({} if wired else dict(backbone_units=16)))
    ours = from_ncps(module)
    assert_agrees_with_ncps(ours, module.rnn_cell, 16 if wired else 8, module.lstm if mixed else None)
    # Without timespans the wrapper itself is right (t = 1): compare with it directly too.
    x, _ = ncps_inputs()
    with torch.no_grad():
        y_ref, _ = module(x)
        y, _ = ours(x)
    torch.testing.assert_close(y, y_ref, **NCPS_TOL)


@pytest.mark.parametrize("activation", ["tanh", "relu", "silu", "gelu"])
def test_from_ncps_cfc_cell_with_other_backbone_activations(activation):
    nt, nw = ncps_torch_and_wirings()
    torch.manual_seed(0)
    cell = nt.CfCCell(D, 8, backbone_activation=activation, backbone_units=16, backbone_layers=2).eval()
    ours = from_ncps(cell)
    assert ours.backbone_activation == activation
    assert_agrees_with_ncps(ours, cell, 8)


def test_other_backbone_activations_keep_the_head_contract():
    """Another activation runs the plain step loop: masks, gradients and streaming as the fused path."""
    torch.manual_seed(0)
    head = create_head("cfc", D, hidden_size=6, backbone_activation="silu", backbone_units=10)
    x, dt = torch.randn(3, 5, D, requires_grad=True), torch.rand(3, 5) + 0.1
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    y, h = head(x, dt, mask=mask)
    assert (y[1, 3:] == 0).all()
    y_alone, h_alone = head(x[1:2, :3], dt[1:2, :3])
    torch.testing.assert_close(y[1:2, :3], y_alone)
    torch.testing.assert_close(h[1:2], h_alone)
    y.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    with torch.no_grad():
        y_step, _ = head.step(x[:, 0], dt[:, :1], head.init_state(3))
    torch.testing.assert_close(y_step, y[:, 0].detach())
    lecun = create_head("cfc", D, hidden_size=6, backbone_units=10)
    lecun.load_state_dict(head.state_dict())
    with torch.no_grad():
        assert not torch.allclose(lecun(x, dt)[0], head(x, dt)[0])  # the activation really changes the math


def test_from_ncps_refuses_what_it_cannot_reproduce():
    nt, nw = ncps_torch_and_wirings()
    with pytest.raises(HeadError, match="proj_size is not supported"):
        from_ncps(nt.CfC(D, 8, proj_size=3))
    with pytest.raises(HeadError, match="sparsity_mask is not supported"):
        from_ncps(nt.CfCCell(D, 8, backbone_layers=0, sparsity_mask=np.ones((D + 8, 8))))
    with pytest.raises(HeadError, match="unknown backbone_activation"):
        create_head("cfc", D, backbone_activation="softsign")
    with pytest.raises(HeadError, match="do not apply to a wired cfc"):
        create_head("cfc", D, wiring="autoncp", hidden_size=16, wiring_kwargs=dict(output_size=4),
                    backbone_activation="relu")


# --- the compiled streaming step (heads.cfc.streaming) ---------------------------------------------

needs_numba = pytest.mark.skipif(not streaming.available(), reason="numba is not installed")

STEP_CONFIGS = [dict(mode=m, backbone_layers=k) for m in ("default", "no_gate", "pure") for k in (0, 1, 2)]
STEP_CONFIGS += [dict(mixed_memory=True), dict(mode="pure", mixed_memory=True, backbone_layers=2),
                 dict(mode="no_gate", mixed_memory=True, backbone_layers=0)]
# Elapsed times of the successive steps: ordinary, zero, large, tiny, very large (per sample varied).
STEP_DTS = [0.7, 0.0, 40.0, 1e-3, 1.5, 1e6]


def build32(**kwargs) -> TemporalHead:
    """A float32 head with a backbone of 12 units (the compiled Linears' 8-row blocks and remainders)."""
    kwargs.setdefault("backbone_units", 12)
    return build(torch.float32, **kwargs)


def spy_on_the_compiled_step(monkeypatch) -> list:
    """Records each call of the compiled step that ran (did not fall back to torch)."""
    calls, real = [], streaming.step

    def spy(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(streaming, "step", spy)
    return calls


def stream_inputs(head, batch: int, seed: int = 1):
    """float32 inputs (B, T, D), one dt (B, 1) per step (``STEP_DTS`` spread over the samples) and a
    random start state."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, len(STEP_DTS), D, generator=g)
    spread = torch.linspace(0.5, 1.5, batch).unsqueeze(1)
    state = tuple(0.5 * torch.randn(s.shape, generator=g) for s in leaves(head.init_state(batch)))
    return x, [dt * spread for dt in STEP_DTS], (state if len(state) == 2 else state[0])


def stream(head, batch: int, reference: bool = False):
    """The steps without autograd: outputs (B, T, H) and final state. ``reference``: through
    ``reference_step`` of a float64 copy of the head instead (the truth)."""
    x, dts, state = stream_inputs(head, batch)
    if reference:
        head = copy.deepcopy(head).double()
        x, dts = x.double(), [dt.double() for dt in dts]
        state = tuple(s.double() for s in state) if isinstance(state, tuple) else state.double()
    run = head.reference_step if reference else head.step
    ys = []
    with torch.no_grad():
        for t, dt in enumerate(dts):
            y, state = run(x[:, t], dt, state)
            ys.append(y)
    return torch.stack(ys, 1), state


@needs_numba
@pytest.mark.parametrize("kwargs", STEP_CONFIGS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("batch", [1, streaming.MAX_BATCH])
def test_compiled_step_matches_the_reference(kwargs, batch, monkeypatch):
    """float32 on the CPU without autograd, one dense sub-cell: the compiled step runs, and over
    successive steps with dt from 0 to 1e6 it gives the plain math (float64) to float32 precision
    and the torch path's values."""
    head = build32(**kwargs)
    calls = spy_on_the_compiled_step(monkeypatch)
    y, state = stream(head, batch)
    assert calls == [True] * len(STEP_DTS)
    y_ref, state_ref = stream(head, batch, reference=True)
    for a, b in [(y, y_ref), *zip(leaves(state), leaves(state_ref))]:
        assert a.dtype == torch.float32 and a.shape == b.shape
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=2e-5)
    monkeypatch.setattr(streaming, "MAX_BATCH", 0)  # the torch path
    y_torch, state_torch = stream(head, batch)
    assert len(calls) == len(STEP_DTS)
    for a, b in [(y, y_torch), *zip(leaves(state), leaves(state_torch))]:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=2e-5)


@needs_numba
def test_compiled_step_at_the_default_size(monkeypatch):
    """The default head (D=64, 64 neurons, 128 backbone units): the benchmark's streaming step."""
    torch.manual_seed(0)
    head = create_head("cfc", 64).eval()
    calls = spy_on_the_compiled_step(monkeypatch)
    x, dt, h = torch.randn(3, 64), torch.rand(3, 1), torch.randn(3, 64).tanh()
    with torch.no_grad():
        y, state = head.step(x, dt, h)
        y1, _ = head.step(x[:1], dt[:1], h[:1])
    assert calls == [True, True]
    y_ref, _ = head.double().reference_step(x.double(), dt.double(), h.double())
    torch.testing.assert_close(y.double(), y_ref.detach(), rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(y1.double(), y_ref[:1].detach(), rtol=1e-5, atol=2e-5)
    assert state is y


@needs_numba
def test_compiled_step_takes_what_step_takes(monkeypatch):
    """Strided inputs, a state that requires grad, one dt (1, 1) for the whole batch and a float64
    dt run the compiled step; a batch above MAX_BATCH, float64 and wired heads take torch ops."""
    head = build32()
    calls = spy_on_the_compiled_step(monkeypatch)
    x = torch.randn(4, 3, D)[:, 1]                        # (4, D), not contiguous
    h = torch.randn(4, 8, requires_grad=True)
    with torch.no_grad():
        for dt in (torch.full((1, 1), 0.3), torch.full((4, 1), 0.3, dtype=torch.float64)):
            y, _ = head.step(x, dt, h)
            torch.testing.assert_close(y, head.reference_step(x, torch.full((4, 1), 0.3), h)[0])
    assert calls == [True, True] and not y.requires_grad
    big = streaming.MAX_BATCH + 1
    x_big, h_big = torch.randn(big, D), torch.randn(big, 8)
    with torch.no_grad():
        y, _ = head.step(x_big, torch.ones(big, 1), h_big)
    torch.testing.assert_close(y, head.reference_step(x_big, torch.ones(big, 1), h_big)[0])
    for other in (build(), build(torch.float32, wiring="autoncp", hidden_size=16)):
        with torch.no_grad():
            other.step(torch.randn(2, D, dtype=other.layers[0].heads.weight.dtype),
                       torch.ones(2, 1), other.init_state(2))
    assert calls == [True, True]


@needs_numba
def test_compiled_step_leaves_bad_shapes_to_torch():
    """An argument that does not fit is torch's error, never a read out of bounds."""
    head = build32()
    with torch.no_grad():
        for x, dt, h in [(torch.randn(2, D + 1), torch.ones(2, 1), torch.zeros(2, 8)),
                         (torch.randn(2, D), torch.ones(2, 1), torch.zeros(3, 8)),
                         (torch.randn(2, D), torch.ones(2, 1), torch.zeros(2, 9))]:
            with pytest.raises(RuntimeError):
                head.step(x, dt, h)


@needs_numba
def test_compiled_step_follows_parameter_updates():
    """The packed weights are part of the cached folded weights: an optimizer's in-place update,
    load_state_dict, a replaced parameter and ``.data =`` all reach the next step."""
    head = build32(mixed_memory=True)
    x, dt = torch.randn(2, D), torch.full((2, 1), 0.5)
    state = tuple(torch.zeros(2, 8) for _ in range(2))

    def check():
        with torch.no_grad():
            y, _ = head.step(x, dt, state)
        torch.testing.assert_close(y, head.reference_step(x, dt, state)[0].detach(), rtol=1e-5, atol=2e-5)
        return y

    before = check()
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
    head.reference_step(x, dt, state)[0].square().sum().backward()
    optimizer.step()
    after = check()
    assert not torch.allclose(before, after)
    other = build32(mixed_memory=True)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-1.0)
    head.load_state_dict(other.state_dict())
    check()
    head.layers[0].heads.bias = torch.nn.Parameter(torch.randn(4 * 8))
    check()
    head.lstm_recurrent.weight.data = torch.randn(4 * 8, 8)
    check()


@needs_numba
def test_tracing_a_step_records_torch_ops():
    """Export traces ``step`` without autograd: the trace must hold the ops, not the compiled
    step's output as a constant."""
    head = build32()

    class Step(torch.nn.Module):  # as perception.export.StepGraph wraps a model
        def __init__(self):
            super().__init__()
            self.head = head

        def forward(self, x, dt, h):
            return self.head.step(x, dt, h)

    x, dt, h = torch.randn(1, D), torch.ones(1, 1), torch.zeros(1, 8)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated
        traced = torch.jit.trace(Step(), (x, dt, h), check_trace=False)
        x2, h2 = torch.randn(1, D), torch.randn(1, 8)
        torch.testing.assert_close(traced(x2, dt, h2)[0], head.step(x2, dt, h2)[0], rtol=1e-5, atol=2e-5)


def test_step_without_numba_takes_torch_ops(monkeypatch):
    """Without numba the compiled step does not apply; the torch path gives the same."""
    monkeypatch.setattr(streaming, "numba", None)
    calls = spy_on_the_compiled_step(monkeypatch)
    head = build32()
    assert head._prepared().compiled is None
    y, state = stream(head, 2)
    assert calls == []
    y_ref, _ = stream(head, 2, reference=True)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=2e-5)


@needs_numba
def test_step_where_compiling_fails_takes_torch_ops(monkeypatch):
    """A compile failure warns once and leaves every step to the torch path."""

    class Broken:
        def compile(self, signature):
            raise RuntimeError("no LLVM here")

    monkeypatch.setattr(streaming, "_step", Broken())
    monkeypatch.setattr(streaming, "_compiled", {"step": None})
    head = build32()
    with pytest.warns(UserWarning, match="compiled streaming step is unavailable"):
        y, _ = stream(head, 2)
    y_ref, _ = stream(head, 2, reference=True)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=2e-5)
    assert streaming._compiled["step"] is False
