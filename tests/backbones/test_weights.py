"""Weights files: torchvision state dicts, bad files, the stem adaptation."""
from __future__ import annotations

import pytest
import torch
from torchvision import models

from backbones import BackboneError, adapt_stem_weight, create_backbone


def _resnet18_features(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.fc = torch.nn.Identity()
    return net(x)


def _mobilenet_features(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.flatten(net.avgpool(net.features(x)), 1)


@pytest.mark.parametrize(
    "name, build, features",
    [
        ("resnet18", models.resnet18, _resnet18_features),
        ("mobilenet_v3_small", models.mobilenet_v3_small, _mobilenet_features),
    ],
    ids=["resnet18", "mobilenet_v3_small"],
)
def test_torchvision_state_dict_loads(
    name, build, features, tmp_path, calibrate, assert_close_scaled
) -> None:
    # A random stand-in for a downloaded ImageNet file, with batch norm statistics of real scale.
    original = calibrate(build(weights=None), torch.randn(4, 3, 64, 64))
    path = tmp_path / f"{name}.pth"
    torch.save(original.state_dict(), path)  # includes the classifier, which is dropped
    net = create_backbone(name, 3, weights=path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = features(original, x)
        assert expected.abs().mean() > 1e-3
        assert_close_scaled(net(x), expected)


def test_state_dict_without_batch_counters_loads(tmp_path) -> None:
    # Older torchvision files have no num_batches_tracked entries.
    net = create_backbone("small", 2)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pt"
    torch.save(state, path)
    loaded = create_backbone("small", 2, weights=path)
    for key, value in state.items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_missing_file_raises(tmp_path) -> None:
    with pytest.raises(BackboneError, match=r"nope\.pt' does not exist"):
        create_backbone("small", 2, weights=tmp_path / "nope.pt")
    with pytest.raises(BackboneError, match="is a directory"):
        create_backbone("small", 2, weights=tmp_path)


@pytest.mark.parametrize(
    "content, problem",
    [([1, 2, 3], "holds a list"), ({"config": {"a": 1}}, "not a state dict"), ({}, "missing keys")],
)
def test_not_a_state_dict_raises(content, problem, tmp_path) -> None:
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(BackboneError, match=rf"odd\.pt.*{problem}"):
        create_backbone("small", 2, weights=path)


def test_code_in_file_is_not_run(tmp_path) -> None:
    # weights_only=True: a pickled object of an arbitrary class is refused, not constructed.
    path = tmp_path / "evil.pt"
    torch.save({"stages.0.0.0.weight": torch.nn.Conv2d(1, 1, 1)}, path)
    with pytest.raises(BackboneError, match="not a readable torch state dict"):
        create_backbone("small", 2, weights=path)


def test_wrong_shapes_are_named(tmp_path) -> None:
    path = tmp_path / "wide.pt"
    torch.save(create_backbone("small", 2, width=2.0).state_dict(), path)
    with pytest.raises(BackboneError, match=r"wide\.pt.*wrong shapes.*stages\.0\.0\.0\.weight"):
        create_backbone("small", 2, weights=path)


def test_non_rgb_stem_of_other_width_is_not_adapted(tmp_path) -> None:
    # Only a 3-channel stem is adapted; a 5-channel file cannot be guessed into 2 channels.
    path = tmp_path / "five.pt"
    torch.save(create_backbone("small", 5).state_dict(), path)
    with pytest.raises(BackboneError, match=r"five\.pt.*wrong shapes"):
        create_backbone("small", 2, weights=path)


@pytest.mark.parametrize("in_channels", [1, 2, 10])
def test_adapt_stem_weight_keeps_the_total(in_channels: int) -> None:
    w = torch.randn(16, 3, 3, 3)
    new = adapt_stem_weight(w, in_channels)
    assert new.shape == (16, in_channels, 3, 3)
    torch.testing.assert_close(new.sum(1), w.sum(1))
    assert torch.equal(new[:, :1].expand_as(new), new)  # every channel the same kernel


def test_rgb_to_rgb_is_unchanged(tmp_path) -> None:
    net = create_backbone("small", 3)
    path = tmp_path / "rgb.pt"
    torch.save(net.state_dict(), path)
    loaded = create_backbone("small", 3, weights=path)
    assert torch.equal(loaded.stages[0][0][0].weight, net.stages[0][0][0].weight)
