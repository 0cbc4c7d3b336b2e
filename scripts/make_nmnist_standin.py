#!/usr/bin/env python
"""Make an N-MNIST stand-in (``data.nmnist_standin``), or measure the logistic-regression floor on one.

    python scripts/make_nmnist_standin.py DIR                 # DIR/NMNIST/{Train,Test}/<digit>/<id>.bin
    perception train --config nmnist --data.root DIR          # train on it
    python scripts/make_nmnist_standin.py DIR --floor         # logistic regression on event counts

The floor: a logistic regression on each recording's event-count image (2 x 34 x 34: OFF and ON
counts, log1p) trained on the same recordings ``perception train`` trains on (the training split
less its validation hold-out: ``--val-fraction``, ``--split-seed`` as ``data.val_fraction``,
``data.seed``), its regularisation chosen on that hold-out, and tested on the test split.
Accuracies on the stand-in are the stand-in's, never N-MNIST's.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from data.errors import DataError
from data.nmnist_standin import SENSOR, StandinConfig, make_nmnist_standin


def count_images(dataset) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2 * 34 * 34) log1p event counts (OFF then ON) and labels (N,) of an ``EventClipDataset``."""
    width, height = SENSOR
    features = np.zeros((len(dataset), 2, height, width), np.float32)
    for i in range(len(dataset)):
        events = dataset.events(i)
        np.add.at(features[i], (events["p"].astype(np.intp), events["y"], events["x"]), 1.0)
    return np.log1p(features.reshape(len(dataset), -1)), np.asarray(dataset.targets)


def logistic_regression_floor(root: str, val_fraction: float, split_seed: int) -> dict[str, float]:
    """Train on the training split less its hold-out, pick C on the hold-out, test on the test split."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 - slow import, needed here only
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    from data import EventClipDataset  # noqa: PLC0415
    from perception.training.data import hold_out  # noqa: PLC0415 - the data module's own hold-out

    x_all, y_all = count_images(EventClipDataset("nmnist", root, split="train"))
    x_test, y_test = count_images(EventClipDataset("nmnist", root, split="test"))
    train, val = hold_out(np.random.default_rng(split_seed).permutation(len(y_all)), val_fraction)
    scaler = StandardScaler().fit(x_all[train])
    scores = {}
    for c in (0.001, 0.01, 0.1, 1.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x_all[train]), y_all[train])
        scores[c] = (model.score(scaler.transform(x_all[val]), y_all[val]), model)
    best = max(scores, key=lambda c: scores[c][0])
    val_acc, model = scores[best]
    return {"C": best, "val_acc": float(val_acc), "test_acc": float(model.score(scaler.transform(x_test), y_test)),
            "train": len(train), "val": len(val), "test": len(y_test)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make_nmnist_standin", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="the folder to write NMNIST/ into (pass it to --data.root)")
    parser.add_argument("--train", type=int, default=StandinConfig.train, help="training recordings (default %(default)s)")
    parser.add_argument("--test", type=int, default=StandinConfig.test, help="test recordings (default %(default)s)")
    parser.add_argument("--seed", type=int, default=StandinConfig.seed, help="the stand-in's seed (default %(default)s)")
    parser.add_argument("--floor", action="store_true",
                        help="do not make anything: measure the logistic-regression floor on ROOT/NMNIST")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="as data.val_fraction (default %(default)s)")
    parser.add_argument("--split-seed", type=int, default=0, help="as data.seed (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.floor:
            result = logistic_regression_floor(args.root, args.val_fraction, args.split_seed)
            print(" ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()))
            return 0
        config = StandinConfig(train=args.train, test=args.test, seed=args.seed)
        start = time.monotonic()

        def progress(done: int, total: int) -> None:
            if done % 100 == 0 or done == total:
                print(f"\r{done}/{total} recordings", end="" if done < total else "\n", file=sys.stderr, flush=True)

        folder = make_nmnist_standin(args.root, config, progress=progress)
    except DataError as error:
        print(f"make_nmnist_standin: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {config.train} training and {config.test} test recordings to {folder} "
          f"in {time.monotonic() - start:.0f} s")
    print(f"next: perception train --config nmnist --data.root {args.root}   (a stand-in: its accuracy is not N-MNIST's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
