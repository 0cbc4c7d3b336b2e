"""The registry: names, options, errors; and the options of the ``small`` backbone."""
from __future__ import annotations

import pytest
import torch

import backbones._registry as registry
from backbones import Backbone, BackboneError, create_backbone, list_backbones, register_backbone


def test_builtin_names() -> None:
    assert {"small", "resnet18", "mobilenet_v3_small"} <= set(list_backbones())
    assert list_backbones() == sorted(list_backbones())


def test_unknown_name_lists_the_allowed_names() -> None:
    with pytest.raises(BackboneError, match="unknown backbone 'resnet1'") as info:
        create_backbone("resnet1", 3)
    for name in list_backbones():
        assert name in str(info.value)


def test_duplicate_name_refused() -> None:
    with pytest.raises(BackboneError, match="'small' is already registered"):
        register_backbone("small")(lambda in_channels: None)


def test_register_new_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_BACKBONES", dict(registry._BACKBONES))

    @register_backbone("tiny")
    class Tiny(Backbone):
        """One conv."""

        stem_name = "conv"

        def __init__(self, in_channels: int, num_features: int = 4) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(in_channels, num_features, 3, stride=2, padding=1)
            self.in_channels, self.num_features = in_channels, num_features

        def _features(self, x):
            return self.conv(x)

    assert "tiny" in list_backbones()
    assert registry.backbone_entry("tiny").description == "One conv."
    net = create_backbone("tiny", 2, num_features=6)
    assert net(torch.randn(1, 2, 32, 32)).shape == (1, 6)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3", None])
def test_bad_in_channels(bad) -> None:
    with pytest.raises(BackboneError, match="in_channels must be a positive integer"):
        create_backbone("small", bad)


def test_unknown_option_names_the_accepted_ones() -> None:
    with pytest.raises(BackboneError, match=r"'small'.*'widht'.*takes: width, depth, num_features"):
        create_backbone("small", 2, widht=2)
    with pytest.raises(BackboneError, match=r"'resnet18'.*takes: no options"):
        create_backbone("resnet18", 2, width=2)


@pytest.mark.parametrize("name", ["small", "resnet18"])
def test_pretrained_refused(name: str) -> None:
    with pytest.raises(BackboneError, match="nothing is downloaded.*weights=PATH"):
        create_backbone(name, 3, pretrained=True)


def test_small_options() -> None:
    base = create_backbone("small", 2)
    assert base.num_features == 128
    wide = create_backbone("small", 2, width=2.0)
    assert wide.num_features == 256
    assert create_backbone("small", 2, width=0.5).num_features == 64
    assert create_backbone("small", 2, num_features=96).num_features == 96
    deep = create_backbone("small", 2, depth=2)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(deep) > n(base) and n(wide) > n(base)
    x = torch.randn(2, 2, 64, 64)
    assert deep.eval()(x).shape == (2, 128)
    assert deep.forward_features(x).shape == (2, 128, 4, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width": 0}, "width must be a positive number"),
        ({"width": "2"}, "width must be a positive number"),
        ({"depth": 0}, "depth must be an integer >= 1"),
        ({"depth": 1.5}, "depth must be an integer >= 1"),
        ({"num_features": 0}, "num_features must be a positive integer"),
    ],
)
def test_small_bad_options(kwargs, match) -> None:
    with pytest.raises(BackboneError, match=match):
        create_backbone("small", 2, **kwargs)
