"""An N-MNIST stand-in: real handwritten digits, moved in front of a simulated event camera.

N-MNIST (Orchard et al. 2015) was recorded by an ATIS camera on a pan-tilt unit making three
saccades of about 100 ms each, a triangle, in front of MNIST digits (28 x 28) shown on a monitor:
34 x 34 pixels, about 300 ms per recording. The stand-in does the same with the real handwritten
digits scikit-learn ships (``sklearn.datasets.load_digits``: 1,797 images of 8 x 8 pixels from 43
writers): each image is upsampled to 28 x 28, centred in 34 x 34, moved along the triangle (jittered
per recording) and turned into events by ``data.simulate_events``. The recordings are written as
N-MNIST writes them (ATIS binary, ``data.io``'s ``atis_bin``), in its folder layout
``NMNIST/{Train,Test}/<digit>/<id>.bin``, so everything that reads N-MNIST reads the stand-in.

It is a stand-in, not N-MNIST: the digits are coarser (8 x 8 upsampled), the sensor is our simulator,
and accuracies measured on it are the stand-in's, never N-MNIST's.

Splits: the digit images are split between train and test before any recording is made (no image
appears in both), per class, deterministically from the seed; each split has (almost) the same number
of recordings of every digit. A split that asks for more recordings than it has images reuses its own
images with other paths. ``standin.json`` beside the splits records the options and, for every file,
its label and the index of its image in ``load_digits``.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from data.errors import DataError
from data.events import Events
from data.files import AtomicFile
from data.io import write_events
from data.simulator import SimulatorConfig, simulate_events

FOLDER = "NMNIST"  # the dataset folder EventDataModule(root=...) looks for under its root
SPLIT_FOLDERS = {"train": "Train", "test": "Test"}
SENSOR = (34, 34)
MANIFEST = "standin.json"
# The triangle the digit's centre follows, in pixels from the sensor's centre (x right, y down):
# three saccades A -> B -> C -> A, as N-MNIST's pan-tilt unit made them.
TRIANGLE = ((-2.5, -1.5), (2.5, -1.5), (0.0, 2.5))


@dataclass(frozen=True)
class StandinConfig:
    """How the stand-in is made.

    Attributes:
        train, test: recordings per split.
        seed: every random draw (the split of the images, the paths, the sensor) comes from it.
        digit_side: the side, in pixels, the 8 x 8 images are upsampled to (MNIST's 28).
        saccade_ms: the mean duration of one saccade (three per recording).
        duration_jitter: each saccade lasts saccade_ms times a factor in [1 - j, 1 + j].
        vertex_jitter: each triangle vertex moves by up to this many pixels in x and y.
        frame_rate_hz: the rate at which the moving image is rendered for the simulator.
        background: the screen's intensity behind the digit (1.0 = the digit's white).
        simulator: the simulated sensor (thresholds, refractory period, noise).
    """

    train: int = 1000
    test: int = 100
    seed: int = 0
    digit_side: int = 28
    saccade_ms: float = 100.0
    duration_jitter: float = 0.1
    vertex_jitter: float = 0.5
    frame_rate_hz: float = 1000.0
    background: float = 0.05
    simulator: SimulatorConfig = field(
        default_factory=lambda: SimulatorConfig(threshold_on=0.4, threshold_off=0.4, threshold_sigma=0.05,
                                                refractory_us=1000, noise_rate_hz=0.2)
    )

    def __post_init__(self):
        for name in ("train", "test"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"StandinConfig.{name}: expected an integer >= 1 recordings, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise DataError(f"StandinConfig.seed: expected an integer >= 0, got {self.seed!r}")
        if not 8 <= self.digit_side <= SENSOR[0] - 6:
            raise DataError(f"StandinConfig.digit_side: expected 8..{SENSOR[0] - 6} pixels, got {self.digit_side!r}")
        if not (self.saccade_ms > 0 and self.frame_rate_hz > 0 and 0 <= self.duration_jitter < 1
                and 0 <= self.vertex_jitter <= 1 and 0 <= self.background < 1):
            raise DataError(f"StandinConfig: a value is out of range: {self!r}")


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits: images (N, 8, 8) float in [0, 1] (1 = ink) and labels (N,)."""
    try:
        from sklearn.datasets import load_digits  # noqa: PLC0415 - an optional, slow import
    except ImportError as error:
        raise DataError("the N-MNIST stand-in needs scikit-learn (pip install scikit-learn)") from error
    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def split_images(labels: np.ndarray, train: int, test: int, seed: int) -> dict[str, np.ndarray]:
    """The image index (into ``labels``) of every recording of each split; no image is in both splits.

    Each split's recordings are spread evenly over the classes (the first ``n % K`` classes get one
    more); each class's images are shuffled and cut in proportion to what the two splits ask of it.

    Returns:
        {"train": (train,), "test": (test,)} int64 image indices, in recording order.
    """
    rng = np.random.default_rng((seed, 1))
    classes = np.unique(labels)
    per_class = {name: np.full(len(classes), n // len(classes)) + (np.arange(len(classes)) < n % len(classes))
                 for name, n in (("train", train), ("test", test))}
    chosen: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for k, label in enumerate(classes):
        images = rng.permutation(np.flatnonzero(labels == label))
        want_train, want_test = int(per_class["train"][k]), int(per_class["test"][k])
        if want_train + want_test == 0:
            continue
        if len(images) < (want_train > 0) + (want_test > 0):
            raise DataError(f"digit {label}: {len(images)} image(s) cannot serve both splits")
        n_test = round(len(images) * want_test / (want_train + want_test))
        n_test = min(max(n_test, int(want_test > 0)), len(images) - int(want_train > 0))
        pools = {"test": images[:n_test], "train": images[n_test:]}
        for name, want in (("train", want_train), ("test", want_test)):
            chosen[name].append(np.resize(pools[name], want))  # cycles through the pool when it is short
    return {name: rng.permutation(np.concatenate(parts)).astype(np.int64) for name, parts in chosen.items()}


def saccade_path(rng: np.random.Generator, config: StandinConfig) -> tuple[np.ndarray, np.ndarray]:
    """Times (T,) seconds and offsets (T, 2) pixels (x, y) of the digit: three minimum-jerk saccades."""
    vertices = np.asarray(TRIANGLE) + rng.uniform(-config.vertex_jitter, config.vertex_jitter, (3, 2))
    durations = config.saccade_ms * 1e-3 * rng.uniform(1 - config.duration_jitter, 1 + config.duration_jitter, 3)
    period = 1.0 / config.frame_rate_hz
    times, offsets, start = [np.zeros(1)], [vertices[:1]], 0.0
    for k in range(3):
        steps = max(2, int(round(durations[k] / period)))
        tau = np.arange(1, steps + 1) / steps
        s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5  # minimum jerk: rests at both ends
        a, b = vertices[k], vertices[(k + 1) % 3]
        times.append(start + tau * durations[k])
        offsets.append(a + s[:, None] * (b - a))
        start += durations[k]
    return np.concatenate(times), np.concatenate(offsets)


def render(image: np.ndarray, offsets: np.ndarray, config: StandinConfig) -> np.ndarray:
    """Frames (T, 34, 34) float32 in [0, 1]: the upsampled ``image`` (8, 8) centred, moved by ``offsets`` (T, 2)."""
    side = config.digit_side
    digit = np.clip(cv2.resize(np.asarray(image, np.float32), (side, side), interpolation=cv2.INTER_CUBIC), 0, 1)
    width, height = SENSOR
    frames = np.empty((len(offsets), height, width), np.float32)
    for i, (dx, dy) in enumerate(offsets):
        shift = np.float32([[1, 0, (width - side) / 2 + dx], [0, 1, (height - side) / 2 + dy]])
        frames[i] = cv2.warpAffine(digit, shift, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return config.background + (1.0 - config.background) * frames


def simulate_recording(image: np.ndarray, rng: np.random.Generator, config: StandinConfig) -> Events:
    """The events (N,) of one recording of ``image`` (8, 8) in [0, 1]: a jittered triangle of saccades."""
    times, offsets = saccade_path(rng, config)
    events, _ = simulate_events(render(image, offsets, config), times, config=config.simulator, rng=rng)
    return events


def make_nmnist_standin(out: str | os.PathLike, config: StandinConfig = StandinConfig(), progress=None) -> Path:
    """Write the stand-in as ``out/NMNIST/{Train,Test}/<digit>/<id>.bin`` plus ``out/NMNIST/standin.json``.

    The folder is built beside its final place and renamed into it when complete, so an interrupted
    run leaves no partial dataset. ``progress(done, total)`` is called after each recording.

    Returns:
        The dataset folder (``out/NMNIST``); train on it with ``--data.root out``.

    Raises:
        DataError: ``out/NMNIST`` exists already, or ``out`` cannot be written.
    """
    out = Path(os.fspath(out)).expanduser()
    target = out / FOLDER
    if target.exists():
        raise DataError(f"{target}: already exists; remove it or choose another folder")
    images, labels = load_digit_images()
    plan = split_images(labels, config.train, config.test, config.seed)
    try:
        out.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=out, prefix=f".{FOLDER}.", suffix=".tmp"))
    except OSError as error:
        raise DataError(f"{out}: cannot create the dataset folder there ({error.strerror or error})") from error
    try:
        files, done, total = [], 0, sum(len(v) for v in plan.values())
        for split, indices in plan.items():
            for k, image_index in enumerate(indices):
                label = int(labels[image_index])
                rng = np.random.default_rng((config.seed, 2, 0 if split == "train" else 1, k))
                events = simulate_recording(images[image_index], rng, config)
                if events.size == 0:
                    raise DataError(f"image {image_index}: the simulator made no events (check the thresholds)")
                relative = f"{SPLIT_FOLDERS[split]}/{label}/{k:05d}.bin"
                (building / relative).parent.mkdir(parents=True, exist_ok=True)
                write_events(building / relative, events, SENSOR, format="atis_bin")
                files.append({"file": relative, "label": label, "image": int(image_index), "events": int(events.size)})
                done += 1
                if progress is not None:
                    progress(done, total)
        manifest = {"what": "an N-MNIST stand-in made from scikit-learn's 8 x 8 digits with the project's event "
                            "simulator; not N-MNIST (see data/nmnist_standin.py)",
                    "config": asdict(config), "triangle": TRIANGLE, "files": files}
        with AtomicFile(building / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1))
        os.chmod(building, 0o777 & ~_umask())
        os.rename(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
