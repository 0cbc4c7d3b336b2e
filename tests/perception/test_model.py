"""PerceptionModel: shapes, masking, streaming equals batch, time_scale, config round trip."""
import pytest
import torch

from perception.errors import PerceptionError
from perception.model import PerceptionModel

torch.set_num_threads(1)


def _model(head="cfc", **kw):
    torch.manual_seed(0)
    return PerceptionModel(in_channels=2, num_classes=3, head=head, backbone_kwargs={"width": 0.5}, **kw).eval()


def _clip(b=2, t=5):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, t, 2, 32, 32, generator=g), torch.rand(b, t, generator=g) * 0.1 + 0.01


@pytest.mark.parametrize("head", ["cfc", "ltc", "gru_dt", "lstm", "spiking", "none"])
def test_forward_shapes_and_streaming_equal_batch(head):
    model = _model(head)
    x, dt = _clip()
    with torch.no_grad():
        logits, _ = model(x, dt)
        assert logits.shape == (2, 5, 3)
        state = None
        for t in range(5):
            step_logits, state = model.step(x[:, t], dt[:, t : t + 1], state)
            torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=1e-4)


def test_padding_does_not_change_a_clip():
    model = _model("cfc")
    x, dt = _clip(b=2, t=6)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        batch_logits, _ = model(x, dt, mask)
        alone, _ = model(x[1:, :4], dt[1:, :4])
    torch.testing.assert_close(batch_logits[1, :4], alone[0], atol=1e-5, rtol=1e-4)


def test_time_scale_divides_dt():
    fast, slow = _model("cfc", time_scale=1.0), _model("cfc", time_scale=0.05)
    slow.load_state_dict(fast.state_dict() | {"time_scale": slow.time_scale})
    x, dt = _clip()
    with torch.no_grad():
        torch.testing.assert_close(slow(x, dt * 0.05)[0], fast(x, dt)[0], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(fast(x, dt)[0], fast(x, dt * 3)[0], atol=1e-4)  # cfc really uses dt


def test_config_round_trip():
    model = _model("gru", dropout=0.1, time_scale=0.04)
    config = model.config()
    assert config["head_kwargs"] == {"hidden_size": 64} and config["time_scale"] == pytest.approx(0.04)
    again = PerceptionModel(**config)
    again.load_state_dict(model.state_dict())
    x, dt = _clip()
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x, dt)[0], model(x, dt)[0])


def test_dt_transforms_give_the_head_what_they_name():
    x, dt = _clip()
    scaled = _model("cfc", time_scale=0.05)
    for transform, expected in (("log1p", torch.log1p(dt / 0.05)), ("learned", dt / 0.05 * torch.exp(torch.tensor(0.3)))):
        model = _model("cfc", time_scale=0.05, dt_transform=transform)
        if transform == "learned":
            with torch.no_grad():
                model.dt_gain.fill_(0.3)
        torch.testing.assert_close(model.scale_dt(dt, torch.float32), expected.float())
        # the same weights given the transformed dt by hand: the same logits
        shared = {k: v for k, v in model.state_dict().items() if k != "dt_gain"}
        scaled.load_state_dict(shared)
        with torch.no_grad():
            torch.testing.assert_close(model(x, dt)[0], scaled(x, expected * 0.05)[0], atol=1e-5, rtol=1e-4)
    # only the learned transform has a parameter, and it trains
    assert "dt_gain" not in dict(scaled.named_parameters())
    learned = _model("cfc", dt_transform="learned").train()
    learned(x, dt)[0].sum().backward()
    assert learned.dt_gain.grad is not None and learned.dt_gain.grad.abs() > 0


@pytest.mark.parametrize("head, head_kwargs", [("cfc", {}), ("cfc", {"mixed_memory": True}), ("gru_dt", {}), ("ltc", {})])
def test_output_integrator_streams_as_it_runs_clips(head, head_kwargs):
    model = _model(head, head_kwargs=head_kwargs, output_integrator=True)
    x, dt = _clip(t=6)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        logits, state = model(x, dt)
        stream = None
        for t in range(6):
            step_logits, stream = model.step(x[:, t], dt[:, t: t + 1], stream)
            torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=1e-4)
        # the integrator's y is the last leaf of the state, after the head's own
        plain = model.head.init_state(2)
        assert len(state) == (len(plain) if isinstance(plain, tuple) else 1) + 1 and state[-1].shape == (2, 64)
        torch.testing.assert_close(stream[-1], state[-1], atol=1e-5, rtol=1e-4)
        padded, _ = model(x, dt, mask)
        alone, _ = model(x[1:, :4], dt[1:, :4])
    torch.testing.assert_close(padded[1, :4], alone[0], atol=1e-5, rtol=1e-4)


def test_output_integrator_fades_in_real_time():
    model = _model("cfc", output_integrator=True)
    o = torch.randn(1, 1, 64)
    y0 = torch.zeros(1, 64)
    tau = torch.exp(model.integrator.log_tau)
    for t in (0.0, 0.5, 5.0):
        out, y = model.integrator(o, torch.full((1, 1), t), y0)
        torch.testing.assert_close(y, (1 - torch.exp(-t / tau)) * o[:, 0])
    # its time constants train
    x, dt = _clip()
    model.train()(x, dt)[0].sum().backward()
    assert model.integrator.log_tau.grad.abs().sum() > 0
    assert PerceptionModel(**model.config()).config()["output_integrator"] is True


def test_output_integrator_is_refused_for_heads_that_ignore_dt():
    for head in ("gru", "lstm", "none"):
        with pytest.raises(PerceptionError, match=f"output_integrator: the head '{head}' ignores dt"):
            _model(head, output_integrator=True)


def test_learned_dt_gain_survives_the_config_round_trip():
    model = _model("cfc", dt_transform="learned")
    with torch.no_grad():
        model.dt_gain.fill_(-0.7)
    again = PerceptionModel(**model.config())
    again.load_state_dict(model.state_dict())
    assert again.config()["dt_transform"] == "learned" and float(again.dt_gain.detach()) == pytest.approx(-0.7)


@pytest.mark.parametrize("kwargs, message", [
    ({"dt_transform": "sqrt"}, "dt_transform: expected one of scale, log1p, learned"),
    ({"num_classes": 1}, "num_classes"),
    ({"time_scale": 0.0}, "time_scale"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(PerceptionError, match=message):
        PerceptionModel(**{"in_channels": 1, "num_classes": 2, **kwargs})


def test_wrong_channels_is_a_clear_error():
    model = _model()
    with pytest.raises(PerceptionError, match=r"x: expected shape \(B, T, 2, H, W\)"):
        model(torch.zeros(1, 2, 3, 32, 32), torch.ones(1, 2))
