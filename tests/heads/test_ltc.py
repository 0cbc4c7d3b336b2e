"""The ``ltc`` head: its fast path against the plain model, time extremes, wirings, sparsity, ncps.

The generic contract (streaming, masks, batch independence, ...) is in test_contract.py.
Shapes: B batch, T time, D input features, N neurons, H outputs.
"""
import pytest
import torch
import torch.nn.functional as F

from heads.ltc import LTC, inverse_softplus, kernels, torch_path
from heads import HeadError, create_head, create_wiring, from_ncps

D = 5


def build(dtype=torch.float64, seed: int = 0, **kwargs) -> LTC:
    torch.manual_seed(seed)
    return create_head("ltc", D, **{"hidden_size": 9, **kwargs}).to(dtype)


def inputs(batch: int, steps: int, dtype=torch.float64, seed: int = 1, features: int = D):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, features, generator=g, dtype=dtype)  # (B, T, D)
    dt = 0.05 + 3 * torch.rand(batch, steps, generator=g, dtype=dtype)  # (B, T)
    return x, dt


def reference(head, x, dt, state):
    """The plain step loop. x (B, T, D), dt (B, T), state (B, N) -> y (B, T, H), state."""
    outputs = []
    for t in range(x.shape[1]):
        y, state = head.reference_step(x[:, t], dt[:, t : t + 1], state)
        outputs.append(y)
    return torch.stack(outputs, 1), state


def run_with_grads(head, x, dt, start, mask=None, forward=None):
    """Outputs and every gradient of one forward (``forward(head, x, dt, start)``, default the
    head itself) + backward. x, dt and start require grad."""
    for leaf in (x, dt, start, *head.parameters()):
        leaf.grad = None
    y, state = head(x, dt, start, mask) if forward is None else forward(head, x, dt, start)
    (y.sin().sum() + (state**2).sum()).backward()
    grads = {name: p.grad.clone() for name, p in head.named_parameters()}
    return {"y": y.detach(), "state": state.detach(), "x": x.grad.clone(), "dt": dt.grad.clone(),
            "start": start.grad.clone(), **grads}


WIRINGS = [
    dict(),
    dict(wiring="random", wiring_kwargs=dict(sparsity=0.6, output_size=4, seed=3)),
    dict(hidden_size=12, wiring="autoncp", wiring_kwargs=dict(output_size=3)),
    dict(input_mapping="linear", output_mapping=None),
    dict(input_mapping=None, output_mapping="linear", ode_unfolds=2),
    dict(ode_unfolds=1, epsilon=0.0),
]


@pytest.mark.parametrize("kwargs", WIRINGS, ids=lambda k: str(sorted(k.items())))
def test_fast_path_equals_plain_loop_values_and_gradients(kwargs):
    head = build(**kwargs)
    x, dt = inputs(3, 6)
    x.requires_grad_(True)
    dt.requires_grad_(True)
    start = torch.randn(3, head.units, dtype=x.dtype, requires_grad=True)

    fast = run_with_grads(head, x, dt, start)
    plain = run_with_grads(head, x, dt, start, forward=reference)
    tol = dict(rtol=1e-9, atol=1e-11)
    for name, value in plain.items():  # y, state, x, dt, initial state and every parameter
        torch.testing.assert_close(fast[name], value, **tol, msg=lambda m: f"{name}: {m}")


def test_fast_path_float32_close_to_float64():
    head = build(dtype=torch.float64)
    x, dt = inputs(4, 10)
    y64, s64 = head(x, dt)
    y32, s32 = head.float()(x.float(), dt.float())
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(s32.double(), s64, rtol=1e-4, atol=1e-5)


needs_numba = pytest.mark.skipif(not kernels.available(), reason="numba is not installed")


@needs_numba
@pytest.mark.parametrize("kwargs", WIRINGS, ids=lambda k: str(sorted(k.items())))
@pytest.mark.parametrize("batch", [1, 5])
def test_compiled_path_equals_torch_path(kwargs, batch, monkeypatch):
    """float32 on the CPU runs the numba kernels; they must give the torch path's values and
    gradients to float32 precision (their sigmoid is an approximation good to about 2e-7)."""
    head = build(dtype=torch.float32, **kwargs)
    x, dt = inputs(batch, 7, dtype=torch.float32)
    dt[:, 2] = 0.0
    x.requires_grad_(True)
    dt.requires_grad_(True)
    start = torch.randn(batch, head.units, requires_grad=True)
    mask = torch.ones(batch, 7, dtype=torch.bool)
    mask[0, 4:] = False
    assert head._use_compiled(x)
    compiled = run_with_grads(head, x, dt, start, mask)
    head.compiled = False
    plain = run_with_grads(head, x, dt, start, mask)
    for name, value in plain.items():
        scale = float(value.abs().max())
        torch.testing.assert_close(compiled[name], value, rtol=0, atol=2e-6 * max(1.0, scale),
                                   msg=lambda m: f"{name}: {m}")
    with torch.no_grad():
        y, state = head(x, dt, start, mask)
    torch.testing.assert_close(y, plain["y"], rtol=0, atol=2e-6)
    torch.testing.assert_close(state, plain["state"], rtol=0, atol=2e-6)


@needs_numba
def test_compiled_path_is_independent_of_the_thread_count():
    head = build(dtype=torch.float32, hidden_size=16)
    x, dt = inputs(7, 5, dtype=torch.float32)
    x.requires_grad_(True)
    dt.requires_grad_(True)
    start = torch.zeros(7, head.units, requires_grad=True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_with_grads(head, x, dt, start)
        torch.set_num_threads(2)
        two = run_with_grads(head, x, dt, start)
    finally:
        torch.set_num_threads(threads)
    # Per sample the kernels do the same arithmetic whatever the thread count, but the torch ops
    # around them (the input map, the sensory synapses) may split their work by thread and round
    # the last bit differently on another CPU: a few float32 ulp, not bit-equality, is promised.
    for name in ("y", "state", "x", "dt", "start"):
        torch.testing.assert_close(one[name], two[name], rtol=4e-7, atol=4e-7, msg=lambda m: f"{name}: {m}")
    for name in dict(head.named_parameters()):  # summed over blocks in another order
        torch.testing.assert_close(one[name], two[name], rtol=1e-5, atol=1e-6)


@needs_numba
def test_compiled_gate_is_the_sigmoid():
    """The kernels' s = 1 / (1 + 2**(ns * v + no)) against torch.sigmoid, across and beyond the clamp."""
    z = torch.linspace(-120.0, 120.0, 200_001)
    scale = kernels.LOG2E
    gates = torch.empty(z.numel())
    bits = torch.empty(z.numel(), dtype=torch.int32)
    mantissa = torch.empty(z.numel())
    ns, no = torch.zeros_like(z), z * -scale  # y = ns * value + no = -z log2 e: s = sigmoid(z)
    kernels._gates(
        0.0, ns.numpy(), no.numpy(), bits.numpy(), mantissa.numpy(), bits.numpy().view("float32"),
        gates.numpy(),
    )
    expected = torch.sigmoid(z.double())
    assert (gates.double() - expected).abs().max() < 3e-7
    # Relative to tiny values too: limited by the float32 rounding of y itself (|y| up to 58 here).
    assert ((gates.double() - expected).abs() / expected)[z.abs() < 40].max() < 4e-6


@needs_numba
def test_float64_and_export_use_the_torch_path(monkeypatch, tmp_path):
    """Only float32 eager CPU work reaches the kernels: float64, tracing and ONNX export run torch ops."""
    head = build(dtype=torch.float32).eval()
    x, dt = inputs(1, 3, dtype=torch.float32)
    with torch.no_grad():
        expected, _ = head(x, dt)
    paths = []
    for path, name in ((kernels, "compiled"), (torch_path, "torch")):
        monkeypatch.setattr(path, "run", lambda *a, run=path.run, name=name: paths.append(name) or run(*a))
    with torch.no_grad():
        head(x, dt)
        assert paths == ["compiled"]
        traced = torch.jit.trace(head, (x, dt), check_trace=False)
        assert paths[1:] == ["torch"]
        torch.testing.assert_close(traced(x, dt)[0], expected, rtol=1e-5, atol=1e-5)
        torch.onnx.export(head, (x, dt), str(tmp_path / "ltc.onnx"), dynamo=False, opset_version=17)
        assert paths[2:] == ["torch"]
        head.double()(x.double(), dt.double())
        assert paths[3:] == ["torch"]


def test_sensory_chunks_give_the_same_result(monkeypatch):
    head = build()
    x, dt = inputs(2, 13)
    y, state = head(x, dt)
    monkeypatch.setattr(torch_path, "CHUNK_ELEMENTS", 2 * 2 * head.units * 3)  # 3 steps a chunk
    monkeypatch.setattr(torch_path, "SENSORY_BLOCK", 3 * head.units * D)  # 3 rows a block
    y_chunked, state_chunked = head(x, dt)
    # Matrix products over other row blocks may round the last bit differently (BLAS kernels).
    torch.testing.assert_close(y_chunked, y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state_chunked, state, rtol=1e-12, atol=1e-12)


def test_no_grad_constants_follow_parameter_changes():
    """Without grad the derived weights are cached; any change to a parameter must show."""
    head = build(dtype=torch.float32)
    x, dt = inputs(2, 4, dtype=torch.float32)
    with torch.no_grad():
        before, _ = head(x, dt)
        # from the cache: the same values up to the last bits. The compiled kernels are vectorised
        # with fastmath: how a sum is split into vector lanes depends on the buffers' alignment, which
        # differs between allocations, so two runs on equal values may round differently (seen: 6e-8).
        torch.testing.assert_close(head(x, dt)[0], before, rtol=1e-6, atol=1e-6)
        head.sigma.mul_(0.5)  # in place, as an optimizer step
        changed, _ = head(x, dt)
    # The grad path derives the weights anew: the same values up to rounding.
    torch.testing.assert_close(changed, head(x, dt)[0].detach(), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(changed, before)
    other = build(dtype=torch.float32, seed=7)
    head.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(head(x, dt)[0], other(x, dt)[0], rtol=1e-6, atol=1e-6)  # (alignment, above)
        y64, _ = head.double()(x.double(), dt.double())  # .to() replaces the tensors
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), other(x, dt)[0].detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grad", [False, True])
def test_zero_dt_leaves_state_exactly_unchanged(grad):
    head = build(dtype=torch.float32)
    x, _ = inputs(3, 5, dtype=torch.float32)
    start = torch.randn(3, head.units)
    with torch.set_grad_enabled(grad):
        y, state = head(x * 10, torch.zeros(3, 5), state=start)
    assert torch.equal(state, start)
    assert torch.isfinite(y).all()
    # cm underflowing to 0 (softplus of a huge negative number) must not turn dt = 0 into 0 / 0.
    with torch.no_grad():
        head.cm.fill_(-1e4)
    _, state = head(x, torch.zeros(3, 5), state=start)
    assert torch.equal(state, start)


def test_masked_steps_ignore_nan_and_inf_padding():
    """The fast path runs a masked step as dt = 0 on a zero input: garbage in the padding stays out."""
    head = build(dtype=torch.float32)
    x, dt = inputs(2, 6, dtype=torch.float32)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0], [1, 0, 1, 1, 1, 0]], dtype=torch.bool)
    x_bad = torch.where(mask[..., None], x, torch.full_like(x, float("nan"))).requires_grad_(True)
    dt_bad = torch.where(mask, dt, torch.full_like(dt, float("inf")))
    y, state = head(x_bad, dt_bad, mask=mask)
    (y.sum() + state.sum()).backward()
    assert torch.all(y[~mask] == 0) and torch.isfinite(y).all() and torch.isfinite(state).all()
    assert torch.isfinite(x_bad.grad).all() and torch.all(x_bad.grad[~mask] == 0)
    for name, p in head.named_parameters():
        assert torch.isfinite(p.grad).all(), name
    for b in range(2):
        y_b, s_b = head(x[b : b + 1, mask[b]], dt[b : b + 1, mask[b]])
        torch.testing.assert_close(y[b, mask[b]], y_b[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(state[b], s_b[0], rtol=1e-6, atol=1e-6)


def test_autocast_runs_in_float32():
    head = build(dtype=torch.float32)
    x, dt = inputs(2, 3, dtype=torch.float32)
    expected, _ = head(x, dt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = head(x.bfloat16(), dt)
    assert y.dtype == torch.float32 and state.dtype == torch.float32
    torch.testing.assert_close(y, expected, rtol=2e-2, atol=2e-2)  # only x was rounded to bfloat16


def test_negative_dt_is_read_as_zero():
    head = build()
    x, _ = inputs(2, 3)
    start = torch.randn(2, head.units, dtype=x.dtype)
    _, state = head(x, torch.full((2, 3), -5.0, dtype=x.dtype), state=start)
    assert torch.equal(state, start)


def test_huge_dt_stays_finite_and_bounded():
    """v' is a convex combination of v and N / D, so |v| never exceeds its start, vleak and E."""
    head = build(dtype=torch.float32)
    g = torch.Generator().manual_seed(5)
    x = 10 * torch.randn(4, 200, D, generator=g)
    dt = torch.exp(torch.empty(4, 200).uniform_(0.0, 14.0, generator=g))  # 1 .. 1.2e6
    dt[:, ::7] = 0.0
    start = 3 * torch.randn(4, head.units, generator=g)
    bound = max(start.abs().max(), head.vleak.abs().max(), head.erev.abs().max(), head.sensory_erev.abs().max())
    y, state = head(x, dt, state=start)
    assert torch.isfinite(y).all() and torch.isfinite(state).all()
    assert state.abs().max() <= bound * (1 + 1e-5)


def test_gradients_finite_at_dt_extremes():
    head = build(dtype=torch.float32)
    x, _ = inputs(3, 4, dtype=torch.float32)
    dt = torch.tensor([[0.0, 1e6, 0.0, 1e4], [1e-6, 0.0, 2.0, 1e5], [0.0, 0.0, 0.0, 0.0]])
    y, state = head(x, dt)
    (y.sum() + state.sum()).backward()
    for name, p in head.named_parameters():
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(wiring="fully_connected", wiring_kwargs=dict(output_size=3)),
        dict(wiring="random", wiring_kwargs=dict(sparsity=0.7)),
        dict(hidden_size=16, wiring="autoncp", wiring_kwargs=dict(output_size=4, sparsity=0.3)),
        dict(
            hidden_size=12,
            wiring="ncp",
            wiring_kwargs=dict(
                inter_neurons=5, command_neurons=4, motor_neurons=3, sensory_fanout=2,
                inter_fanout=2, recurrent_command_synapses=3, motor_fanin=2,
            ),
        ),
    ],
    ids=["fully_connected", "random", "autoncp", "ncp"],
)
def test_each_wiring_kind(kwargs):
    head = build(**kwargs)
    wiring = head.wiring
    assert head.units == wiring.units and head.out_features == wiring.output_size
    x, dt = inputs(2, 4)
    y, state = head(x, dt)
    assert y.shape == (2, 4, wiring.output_size) and state.shape == (2, wiring.units)
    # E starts at the wiring's polarity signs; the masks are its synapses.
    torch.testing.assert_close(head.erev, torch.from_numpy(wiring.adjacency).to(head.erev))
    torch.testing.assert_close(head.sensory_erev, torch.from_numpy(wiring.sensory_adjacency).to(head.erev))
    assert torch.equal(head.sparsity_mask != 0, torch.from_numpy(wiring.adjacency != 0))
    assert torch.equal(head.sensory_sparsity_mask != 0, torch.from_numpy(wiring.sensory_adjacency != 0))


def test_built_wiring_object_is_used_as_is():
    wiring = create_wiring("autoncp", D, 14, output_size=2, seed=9)
    head = create_head("ltc", D, wiring=wiring)
    assert head.wiring is wiring and head.units == 14 and head.out_features == 2
    with pytest.raises(HeadError, match="hidden_size=20"):
        create_head("ltc", D, hidden_size=20, wiring=wiring)
    with pytest.raises(HeadError, match="built for 5 inputs"):
        create_head("ltc", 7, wiring=wiring)


def test_left_out_synapses_stay_exactly_zero_after_training():
    head = build(dtype=torch.float32, wiring="random", wiring_kwargs=dict(sparsity=0.5))
    optimizer = torch.optim.Adam(head.parameters(), lr=0.5)
    for step in range(3):
        x, dt = inputs(4, 5, dtype=torch.float32, seed=step)
        optimizer.zero_grad()
        y, _ = head(x, dt)
        (y**2).sum().backward()
        for name, mask in (("w", head.sparsity_mask), ("sensory_w", head.sensory_sparsity_mask)):
            prefix = name[: -len("w")]
            for part in ("w", "sigma", "mu", "erev"):
                grad = getattr(head, prefix + part).grad
                assert torch.all(grad[mask == 0] == 0), f"{prefix + part} got a gradient on a left-out synapse"
                assert grad[mask != 0].abs().sum() > 0
        optimizer.step()
    for name, mask in (("w", head.sparsity_mask), ("sensory_w", head.sensory_sparsity_mask)):
        effective = F.softplus(getattr(head, name)) * mask
        assert (mask == 0).any() and torch.all(effective[mask == 0] == 0)
        assert torch.all(effective[mask != 0] > 0)


def test_positive_parameters_stay_positive():
    head = build(dtype=torch.float32)
    # Initialised so that softplus lands in ncps's ranges.
    ranges = {"gleak": (0.001, 1.0), "cm": (0.4, 0.6), "w": (0.001, 1.0), "sensory_w": (0.001, 1.0)}
    for name, (low, high) in ranges.items():
        value = F.softplus(getattr(head, name))
        assert value.min() >= low * 0.999 and value.max() <= high * 1.001, name
    with torch.no_grad():
        for name in ("gleak", "cm", "w", "sensory_w"):
            getattr(head, name).fill_(-50.0)
    x, dt = inputs(2, 3, dtype=torch.float32)
    y, state = head(x, dt)
    assert torch.isfinite(y).all()
    for name in ("gleak", "cm", "w", "sensory_w"):
        assert torch.all(F.softplus(getattr(head, name)) > 0)


def test_inverse_softplus():
    value = torch.tensor([0.0, -1.0, 1e-6, 0.5, 3.0, 40.0])
    raw = inverse_softplus(value)
    assert torch.isfinite(raw).all() and raw[0] < -60 and raw[0] == raw[1]
    torch.testing.assert_close(F.softplus(raw[2:]), value[2:], rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ode_unfolds=0), "ode_unfolds"),
        (dict(ode_unfolds=2.5), "ode_unfolds"),
        (dict(input_mapping="relu"), "'affine', 'linear', None"),
        (dict(output_mapping="bias"), "'affine', 'linear', None"),
        (dict(epsilon=-1.0), "epsilon"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(wiring="dense"), "choose one of: autoncp, fully_connected, ncp, random"),
        (dict(wiring=3), "wiring must be a Wiring, None or one of"),
        (dict(wiring_kwargs=[1]), "wiring_kwargs must be a dict"),
        (dict(wiring="random", wiring_kwargs=dict(sparsity=1.5)), "sparsity"),
        (dict(wiring="fully_connected", wiring_kwargs=dict(fanout=2)), "fanout"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(HeadError, match=match):
        create_head("ltc", D, **kwargs)


# -- ncps ----------------------------------------------------------------------------------------


def _ncps():
    """ncps's torch cells and its wirings; the test is skipped where ncps is not installed."""
    pytest.importorskip("ncps")
    import ncps.torch
    import ncps.wirings

    return ncps.torch, ncps.wirings


def _ncps_wirings(units: int):
    _, wirings = _ncps()
    return {
        "FullyConnected": lambda: wirings.FullyConnected(units),
        "FullyConnected-out": lambda: wirings.FullyConnected(units, output_dim=3),
        "Random": lambda: wirings.Random(units, sparsity_level=0.5),
        "AutoNCP": lambda: wirings.AutoNCP(units, 4),
    }


@pytest.mark.parametrize("implicit", [True, False], ids=["softplus", "identity"])
@pytest.mark.parametrize("kind", ["FullyConnected", "FullyConnected-out", "Random", "AutoNCP"])
def test_matches_ncps_ltc_cell(kind, implicit):
    cells, wirings = _ncps()
    torch.manual_seed(2)
    cell = cells.LTCCell(_ncps_wirings(12)[kind](), 7, implicit_param_constraints=implicit)
    with torch.no_grad():  # move off ncps's init so that a wrong copy or a wrong mask would show
        for p in cell.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.rand_like(p))
    head = from_ncps(cell)
    assert isinstance(head, LTC)
    x, dt = inputs(5, 8, dtype=torch.float32, features=7)
    dt = torch.exp(torch.empty(5, 8).uniform_(-4, 3))  # per-sample random times, 0.02 .. 20
    state = torch.zeros(5, cell.state_size)
    expected = []
    with torch.no_grad():
        for t in range(8):  # ncps's cell driven directly, time shaped (B, 1)
            out, state = cell(x[:, t], state, dt[:, t : t + 1])
            expected.append(out)
        y, ours = head(x, dt)
    torch.testing.assert_close(y, torch.stack(expected, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, state, rtol=1e-5, atol=1e-5)


def test_ncps_identity_form_with_zero_and_negative_values():
    """ncps without implicit constraints clips gleak, cm, w, sensory_w at 0: we store a finite raw."""
    cells, wirings = _ncps()
    torch.manual_seed(3)
    cell = cells.LTCCell(wirings.FullyConnected(6), 4, implicit_param_constraints=False)
    with torch.no_grad():
        cell.w[0] = 0.0
        cell.sensory_w[:, 1] = -0.3  # what an optimizer step leaves before apply_weight_constraints
    cell.apply_weight_constraints()
    head = from_ncps(cell)
    for p in head.parameters():
        assert torch.isfinite(p).all()
    x, dt = inputs(3, 4, dtype=torch.float32, features=4)
    state = torch.zeros(3, 6)
    with torch.no_grad():
        for t in range(4):
            out, state = cell(x[:, t], state, dt[:, t : t + 1])
        y, ours = head(x, dt)
    torch.testing.assert_close(ours, state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[:, -1], out, rtol=1e-5, atol=1e-5)


def test_ncps_mappings_and_wrapper():
    cells, wirings = _ncps()
    torch.manual_seed(4)
    rnn = cells.LTC(6, wirings.AutoNCP(10, 3), input_mapping="linear", output_mapping=None, ode_unfolds=3)
    head = from_ncps(rnn)
    assert head.input_mapping == "linear" and head.output_mapping is None and head.ode_unfolds == 3
    assert head.out_features == 3 and not hasattr(head, "input_b")
    x, _ = inputs(1, 5, dtype=torch.float32, features=6)
    with torch.no_grad():
        expected, h_n = rnn(x)  # batch 1 and no timespans: the wrapper's time handling is not in play
        y, state = head(x)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, h_n, rtol=1e-5, atol=1e-5)
    assert head.training == rnn.training


def test_ncps_mixed_memory_is_refused():
    cells, wirings = _ncps()
    rnn = cells.LTC(4, 8, mixed_memory=True)
    with pytest.raises(HeadError, match="mixed_memory"):
        from_ncps(rnn)
