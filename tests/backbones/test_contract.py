"""The backbone contract, checked for every registered backbone (a new one is tested for free)."""
from __future__ import annotations

import socket

import pytest
import torch
import torchvision

import backbones
from backbones import Backbone, BackboneError, create_backbone, list_backbones

NAMES = list_backbones()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Make every way of downloading weights fail loudly, and point the cache at an empty folder."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args!r}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    cache = tmp_path / "torch_home"
    cache.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(cache))
    return cache


def _stem(net: Backbone) -> torch.nn.Conv2d:
    stem = net.get_submodule(net.stem_name)
    assert isinstance(stem, torch.nn.Conv2d)
    return stem


@pytest.mark.parametrize("name", NAMES)
def test_registered_default_exists(name: str) -> None:
    assert backbones.DEFAULT_BACKBONE in NAMES
    assert backbones.backbone_entry(name).description


@pytest.mark.parametrize("in_channels", [1, 2, 3, 10])
@pytest.mark.parametrize("name", NAMES)
def test_output_shapes(name: str, in_channels: int) -> None:
    net = create_backbone(name, in_channels).eval()
    assert isinstance(net, Backbone)
    assert net.in_channels == in_channels
    assert _stem(net).in_channels == in_channels
    D = net.num_features
    assert isinstance(D, int) and D > 0
    with torch.no_grad():
        for H, W in [(32, 32), (64, 64), (48, 80)]:
            x = torch.randn(2, in_channels, H, W)
            y = net(x)
            fmap = net.forward_features(x)
            assert y.shape == (2, D)
            assert fmap.ndim == 4 and fmap.shape[:2] == (2, D)
            assert fmap.shape[2] >= 1 and fmap.shape[3] >= 1
            # Wider inputs give wider maps: the map keeps the aspect ratio (rounded).
            assert fmap.shape[3] >= fmap.shape[2]
            assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_large_frame(name: str) -> None:
    net = create_backbone(name, 3).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 3, 240, 320))
    assert y.shape == (1, net.num_features)


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_pooled_features(name: str, calibrate) -> None:
    x = torch.randn(3, 5, 64, 96)
    net = calibrate(create_backbone(name, 5), x)
    with torch.no_grad():
        fmap = net.forward_features(x)
        assert fmap.shape[2] * fmap.shape[3] > 1  # so max or a corner would differ from the mean
        assert fmap.abs().mean() > 1e-3  # not collapsed to ~0, where any comparison would pass
        torch.testing.assert_close(net(x), fmap.mean(dim=(2, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    net = create_backbone(name, 2).train()
    x = torch.randn(2, 2, 64, 64, requires_grad=True)
    # A random projection: a plain sum is flat through train-mode batch norm.
    (net(x) * torch.randn(2, net.num_features)).sum().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_batch_independence_in_eval(name: str, calibrate, assert_close_scaled) -> None:
    x = torch.randn(4, 2, 64, 64)
    net = calibrate(create_backbone(name, 2), torch.randn(8, 2, 64, 64))
    with torch.no_grad():
        together = net(x)
        alone = torch.cat([net(x[i : i + 1]) for i in range(4)])
        changed = x.clone()
        changed[1:] = torch.randn(3, 2, 64, 64)
        first_again = net(changed)[0]
    assert_close_scaled(alone, together)
    assert_close_scaled(first_again, together[0])


@pytest.mark.parametrize("name", NAMES)
def test_wrong_input_channels_raises(name: str) -> None:
    net = create_backbone(name, 2)
    with pytest.raises(BackboneError, match=r"\(N, 2, H, W\)"):
        net(torch.randn(1, 3, 32, 32))
    with pytest.raises(BackboneError, match=r"\(N, 2, H, W\)"):
        net.forward_features(torch.randn(2, 32, 32))


@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip(name: str, tmp_path, no_network, calibrate) -> None:
    # Calibrating moves the batch norm statistics off their defaults, so buffers are tested too.
    net = calibrate(create_backbone(name, 2), torch.randn(4, 2, 32, 32))
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)

    other = calibrate(create_backbone(name, 2), torch.randn(4, 2, 32, 32))
    x = torch.randn(3, 2, 32, 48)
    with torch.no_grad():
        assert (other(x) - net(x)).abs().max() > 1e-2 * net(x).abs().max()
        loaded = create_backbone(name, 2, weights=path).eval()
        assert torch.equal(loaded(x), net(x))
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_rgb_weights_adapted_to_ten_channels(name: str, tmp_path, calibrate, assert_close_scaled) -> None:
    rgb = calibrate(create_backbone(name, 3), torch.randn(4, 3, 64, 64))
    path = tmp_path / "rgb.pt"
    torch.save(rgb.state_dict(), path)
    net = create_backbone(name, 10, weights=path).eval()

    w3, w10 = _stem(rgb).weight, _stem(net).weight
    assert w10.shape[1] == 10
    torch.testing.assert_close(w10, w3.mean(1, keepdim=True).repeat(1, 10, 1, 1) * 0.3)
    # Linear in the input, so the same grey image in every channel gives the RGB model's answer.
    grey = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = rgb(grey.expand(-1, 3, -1, -1))
        assert_close_scaled(net(grey.expand(-1, 10, -1, -1)), expected)
        # ...and is not a trivial equality: a differently-weighted input changes the answer.
        assert (net(torch.randn(2, 10, 64, 64)) - expected).abs().max() > 1e-2 * expected.abs().max()


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_weights_file_raises(name: str, tmp_path) -> None:
    good = tmp_path / "good.pt"
    torch.save(create_backbone(name, 2).state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint\n" * 10)
    for path in (truncated, garbage):
        with pytest.raises(BackboneError, match=path.name) as info:
            create_backbone(name, 2, weights=path)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_weights_raise(name: str, tmp_path) -> None:
    other = next(n for n in NAMES if n != name)
    path = tmp_path / f"{other}.pt"
    torch.save(create_backbone(other, 2).state_dict(), path)
    with pytest.raises(BackboneError, match=rf"{path.name}.*(missing|unexpected|wrong)"):
        create_backbone(name, 2, weights=path)


@pytest.mark.parametrize("name", NAMES)
def test_nothing_downloaded(name: str, no_network, tmp_path) -> None:
    net = create_backbone(name, 4)
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    create_backbone(name, 4, weights=path)
    with pytest.raises(BackboneError, match="weights=PATH"):
        create_backbone(name, 4, pretrained=True)
    assert list(no_network.iterdir()) == []
