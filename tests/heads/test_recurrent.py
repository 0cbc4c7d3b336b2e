"""GRU / LSTM heads: the fused whole-sequence path against the step loop, and the dt input."""
from __future__ import annotations

import math

import pytest
import torch

from heads import HeadError, create_head, head_entry
from heads.recurrent import dt_feature

NAMES = ["gru", "lstm", "gru_dt", "lstm_dt"]
B, T, D, H = 5, 12, 7, 9


def _flat(state):
    return state if isinstance(state, tuple) else (state,)


def _masks() -> dict[str, torch.Tensor | None]:
    lengths = torch.tensor([T, 9, 4, 1, 0])
    holes = torch.rand(B, T, generator=torch.Generator().manual_seed(3)) > 0.4
    holes[0] = True  # one complete row,
    holes[4] = False  # one empty row,
    holes[2, 0] = False  # a row starting with a hole
    return {
        "none": None,
        "all_true": torch.ones(B, T, dtype=torch.bool),
        "prefix": torch.arange(T) < lengths.unsqueeze(1),
        "holes": holes,
    }


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g)
    dt = torch.rand(B, T, generator=g) * 4
    dt[:, 2] = 0.0
    return x, dt


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("mask_kind", list(_masks()))
@pytest.mark.parametrize("name", NAMES)
def test_fast_path_matches_step_loop(name, mask_kind, num_layers):
    torch.manual_seed(0)
    head = create_head(name, D, hidden_size=H, num_layers=num_layers)
    mask = _masks()[mask_kind]
    x, dt = _inputs()
    x.requires_grad_(True)
    start = tuple(0.5 * torch.randn_like(s) for s in _flat(head.init_state(B)))  # a carried-in state
    start = start if head.cell == "lstm" else start[0]

    results = []
    for run in (head.forward, head.step_loop):  # fused, step loop
        head.zero_grad()
        x.grad = None
        y, state = run(x, dt, start, mask=mask)
        (y.square().sum() + sum(s.sin().sum() for s in _flat(state))).backward()
        grads = [p.grad.clone() for p in head.parameters()] + [x.grad.clone()]
        results.append((y.detach(), [s.detach() for s in _flat(state)], grads))

    (y1, s1, g1), (y2, s2, g2) = results
    torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    if mask is not None:
        assert (y1[~mask] == 0).all()
        if mask_kind == "prefix" or mask_kind == "holes":  # the empty row keeps the carried-in state
            for a, b in zip(s1, _flat(start)):
                assert torch.equal(a[4], b[4])


@pytest.mark.parametrize("name", NAMES)
def test_holes_equal_the_clip_without_them(name):
    torch.manual_seed(1)
    head = create_head(name, D, hidden_size=H)
    x, dt = _inputs(1)
    holey_x = torch.zeros(B, 2 * T, D)
    holey_dt = torch.full((B, 2 * T), 123.0)  # dt at a masked step must not matter
    mask = torch.zeros(B, 2 * T, dtype=torch.bool)
    holey_x[:, 1::2], holey_dt[:, 1::2], mask[:, 1::2] = x, dt, True
    y, state = head(x, dt)
    yh, stateh = head(holey_x, holey_dt, mask=mask)
    torch.testing.assert_close(yh[:, 1::2], y, atol=1e-6, rtol=1e-6)
    assert (yh[:, ::2] == 0).all()
    for a, b in zip(_flat(stateh), _flat(state)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_registry(name):
    head = create_head(name, D, hidden_size=H, num_layers=3)
    assert head.out_features == H and head.in_features == D
    assert head.time_aware == name.endswith("_dt") == head_entry(name).time_aware
    y, state = head(torch.randn(2, 4, D))
    assert y.shape == (2, 4, H)
    for s in _flat(state):
        assert s.shape == (2, 3, H)
    assert len(_flat(state)) == (2 if "lstm" in name else 1)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_dt_variant_reacts_to_dt_and_plain_one_does_not(cell):
    torch.manual_seed(2)
    x, dt = _inputs(2)
    other_dt = dt * 10 + 1
    plain, timed = create_head(cell, D, hidden_size=H), create_head(cell + "_dt", D, hidden_size=H)
    assert torch.equal(plain(x, dt)[0], plain(x, other_dt)[0])
    assert torch.equal(plain(x, dt)[0], plain(x)[0])
    y_a, y_b = timed(x, dt)[0], timed(x, other_dt)[0]
    assert (y_a - y_b).abs().max() > 1e-3
    # The time feature is read at the step where dt changes: earlier outputs are untouched.
    late_dt = dt.clone()
    late_dt[:, 7] += 50
    y_late = timed(x, late_dt)[0]
    assert torch.equal(y_late[:, :7], y_a[:, :7]) and not torch.allclose(y_late[:, 7], y_a[:, 7])


def test_dt_feature_is_log1p_and_stays_in_range():
    dt = torch.tensor([0.0, 1.0, 9000.0, 1e5, -3.0])
    feature = dt_feature(dt)
    assert torch.allclose(feature[:4], torch.log1p(dt[:4]))
    assert feature[4] == 0  # a negative dt (clock glitch) reads as no time
    assert feature.max() < 12 and math.isfinite(feature.sum())


def test_weights_are_torch_rnn_weights():
    """A state dict of a plain nn.GRU loads into the head's rnn and gives its outputs."""
    torch.manual_seed(3)
    rnn = torch.nn.GRU(D, H, num_layers=2, batch_first=True)
    head = create_head("gru", D, hidden_size=H, num_layers=2)
    head.rnn.load_state_dict(rnn.state_dict())
    x = torch.randn(3, 6, D)
    expected, h_n = rnn(x)
    y, state = head(x)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(state, h_n.transpose(0, 1))


def test_dropout_between_layers():
    torch.manual_seed(4)
    head = create_head("lstm", D, hidden_size=H, num_layers=2, dropout=0.5).eval()
    x, dt = _inputs(4)
    torch.testing.assert_close(head(x, dt)[0], head.step_loop(x, dt)[0], atol=1e-5, rtol=1e-5)
    head.train()
    assert not torch.allclose(head(x, dt)[0], head(x, dt)[0])  # dropout acts while training


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"num_layers": 1.5}, "num_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": 0.2}, "num_layers >= 2"),
        ({"bidirectional": True}, "bidirectional"),
    ],
)
def test_bad_options_raise_head_error(kwargs, words):
    with pytest.raises(HeadError, match=words):
        create_head("gru_dt", D, **kwargs)


def test_bad_mask_shape():
    head = create_head("gru", D, hidden_size=H)
    with pytest.raises(ValueError, match="mask"):
        head(torch.randn(2, 4, D), mask=torch.ones(2, 5, dtype=torch.bool))
