"""data.Preprocessing: the train -> checkpoint -> stream contract, its plain form and its checks."""
from __future__ import annotations

import copy

import pytest
import torch

from data import DataError, Preprocessing, WindowSpec, create_representation
from data.preprocessing import MAX_SIDE, VERSION

VOXELS = {"name": "voxel_grid", "bins": 5, "polarity": "signed", "normalize": "standard"}
FRAMES = Preprocessing.frames((64, 48), 3, 1 / 30)
EVENTS = Preprocessing.events((346, 260), (87, 65), VOXELS, WindowSpec.count(2_000, drop_last=True), 0.02, downsample=4)


@pytest.mark.parametrize("pre", [FRAMES, EVENTS, Preprocessing.events((64, 64), (64, 64), VOXELS,
                                                                      WindowSpec.frames(58_900, drop_last=True), 0.0589)])
def test_round_trip_through_plain_values(pre, tmp_path):
    data = pre.to_dict()
    assert data["version"] == VERSION
    torch.save(data, tmp_path / "pre.pt")
    loaded = torch.load(tmp_path / "pre.pt", weights_only=True)  # plain values only
    assert Preprocessing.from_dict(loaded) == pre
    assert Preprocessing.from_dict(loaded).to_dict() == data


def test_fields():
    assert (FRAMES.modality, FRAMES.frame_size, FRAMES.channels, FRAMES.sensor_size) == ("frames", (64, 48), 3, None)
    assert EVENTS.channels == 5 and EVENTS.frame_size == (87, 65) and EVENTS.window.drop_last
    assert EVENTS.make_representation() == create_representation(**VOXELS)
    # the representation is kept in its full form, so equal ones compare equal
    short = Preprocessing.events((64, 64), (64, 64), {"name": "voxel_grid"}, WindowSpec.duration(10), 1.0)
    assert short.representation == {"name": "voxel_grid", "bins": 5, "polarity": "signed", "normalize": None}


def test_the_layout_without_a_version_is_converted():
    frames = Preprocessing.from_dict({"modality": "frames", "size": [32, 24], "grey": True}, time_scale=0.04)
    assert frames == Preprocessing.frames((32, 24), 1, 0.04)
    assert Preprocessing.from_dict({"modality": "frames", "size": [32, 24]}, time_scale=0.04).channels == 3
    old = {"modality": "events", "sensor_size": [128, 128], "frame_size": [32, 32], "downsample": 4,
           "representation": {"name": "voxel_grid", "bins": 3}, "window": {"mode": "duration", "size": 50_000, "overlap": 0}}
    events = Preprocessing.from_dict(old, time_scale=0.05)
    assert events == Preprocessing.events((128, 128), (32, 32), {"name": "voxel_grid", "bins": 3},
                                          WindowSpec.duration(50_000), 0.05, downsample=4)
    del old["downsample"]
    old["frame_size"] = [128, 128]
    assert Preprocessing.from_dict(old, time_scale=0.05).downsample == 1
    with pytest.raises(DataError, match="holds no time scale"):
        Preprocessing.from_dict({"modality": "frames", "size": [32, 24], "grey": True})
    with pytest.raises(DataError, match=r"unknown keys \['crop'\] in a layout without a version"):
        Preprocessing.from_dict({"modality": "frames", "size": [32, 24], "crop": 1}, time_scale=0.04)


def _changed(pre: Preprocessing, **changes) -> dict:
    data = copy.deepcopy(pre.to_dict())
    data.update(changes)
    return data


@pytest.mark.parametrize("data, match", [
    ([1, 2], "preprocessing: expected a dict, got list"),
    (_changed(FRAMES, version=2), "preprocessing.version: this version reads layout 1; got 2"),
    (_changed(FRAMES, extra=1), r"preprocessing: unknown keys \['extra'\]"),
    ({"version": 1, "modality": "frames"}, r"missing keys \['frame_size', 'channels', 'time_scale'\]"),
    (_changed(FRAMES, modality="audio"), "preprocessing.modality: expected one of 'frames', 'events'; got 'audio'"),
    (_changed(FRAMES, frame_size=[100_000, 100_000]), r"preprocessing.frame_size: expected \(width, height\), integers "
                                                       rf"in 1..{MAX_SIDE}; got \[100000, 100000\]"),
    (_changed(FRAMES, frame_size=[0, 10]), "preprocessing.frame_size: expected"),
    (_changed(FRAMES, frame_size=[10.5, 10]), "preprocessing.frame_size: expected"),
    (_changed(FRAMES, frame_size=[True, 10]), "preprocessing.frame_size: expected"),
    (_changed(FRAMES, frame_size=[10, 10, 3]), "preprocessing.frame_size: expected"),
    (_changed(FRAMES, frame_size="64x48"), "preprocessing.frame_size: expected"),
    (_changed(FRAMES, frame_size=[65_536, 65_536]), "preprocessing.frame_size: 65536 x 65536 is more than"),
    (_changed(FRAMES, channels=0), r"preprocessing.channels: expected an integer in 1..1024; got 0"),
    (_changed(FRAMES, channels=2), "preprocessing.channels: frames have 1 .grey. or 3 .RGB. channels; got 2"),
    (_changed(FRAMES, channels="3"), "preprocessing.channels: expected an integer"),
    (_changed(EVENTS, channels=1024, frame_size=[4096, 4096], sensor_size=[4096, 4096], downsample=1),
     "preprocessing.channels: 1024 x 4096 x 4096 inputs hold more than"),
    (_changed(FRAMES, time_scale=0.0), "preprocessing.time_scale: expected a finite number of seconds > 0; got 0.0"),
    (_changed(FRAMES, time_scale=float("nan")), "preprocessing.time_scale: expected a finite number"),
    (_changed(FRAMES, time_scale="fast"), "preprocessing.time_scale: expected a finite number"),
    (_changed(FRAMES, downsample=2), "preprocessing.downsample: frames are resized, not downsampled"),
    (_changed(FRAMES, window={"mode": "duration", "size": 10}), "preprocessing.window: frames have none"),
    (_changed(FRAMES, sensor_size=[64, 48]), "preprocessing.sensor_size: frames have none"),
    (_changed(EVENTS, downsample=0), r"preprocessing.downsample: expected an integer in 1..65536; got 0"),
    (_changed(EVENTS, downsample=3), r"preprocessing.frame_size: 87 x 65 is not the 346 x 260 sensor downsampled by 3"),
    (_changed(EVENTS, downsample=1, frame_size=[400, 200]), "preprocessing.frame_size: 400 x 200 is larger than"),
    (_changed(EVENTS, sensor_size=None), "preprocessing.sensor_size: events need"),
    (_changed(EVENTS, sensor_size=[70_000, 260]), "preprocessing.sensor_size: expected"),
    (_changed(EVENTS, representation=None), "preprocessing.representation: events need"),
    (_changed(EVENTS, representation={"bins": 5}), "preprocessing.representation: expected a config dict with a 'name'"),
    (_changed(EVENTS, representation={"name": "voxels"}), "preprocessing.representation: representation: unknown name"),
    (_changed(EVENTS, representation={"name": "voxel_grid", "bins": 5, "colour": 1}),
     "preprocessing.representation: representation 'voxel_grid': unknown options"),
    (_changed(EVENTS, representation={"name": "voxel_grid", "bins": 0}), "preprocessing.representation: VoxelGrid"),
    (_changed(EVENTS, channels=4), "preprocessing.channels: 4 does not match the representation's 5"),
    (_changed(EVENTS, window=None), "preprocessing.window: events need a WindowSpec; got None"),
    (_changed(EVENTS, window=[1, 2]), "preprocessing.window: expected a dict"),
    (_changed(EVENTS, window={"mode": "duration", "size": 0}), "preprocessing.window: WindowSpec: size must be at least 1"),
    (_changed(EVENTS, window={"mode": "time", "size": 10}), "preprocessing.window: WindowSpec: mode must be one of"),
    (_changed(EVENTS, window={"mode": "count", "size": 10, "step": 2}), r"preprocessing.window: WindowSpec: unknown keys"),
])
def test_every_malformed_field_is_one_line_naming_it(data, match):
    with pytest.raises(DataError, match=match) as caught:
        Preprocessing.from_dict(data)
    assert "\n" not in str(caught.value)
