"""The options of ``perception evaluate`` (kept free of heavy imports: the CLI builds every parser).

Options of ``perception train`` (``--config NAME|FILE``, ``--data.*``, ``--model.*``,
``--trainer.*``) are passed on to it: each head is trained as ``perception train`` would with them,
within the budget (``perception.evaluation.run.BUDGETS``): its epochs, and its clip counts on data
modules that take them, replace the config's unless the command line gives them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_HEADS = ("cfc", "ltc", "gru", "gru_dt", "lstm", "spiking", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--heads", default=",".join(DEFAULT_HEADS),
                        help="comma-separated heads to train and compare (default: %(default)s)")
    parser.add_argument("--ablation", default=None,
                        help="instead of --heads: ablate the liquid heads (comma-separated: cfc, ltc), one option "
                             "changed at a time, against gru_dt, gru and lstm; judged on the tasks that need time "
                             "under the training timing and the unseen rates (ablation.md in the report folder)")
    parser.add_argument("--checkpoints", default=None,
                        help="comma-separated checkpoints to compare instead of training (trained on the built-in dataset)")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated training seeds (default: 0,1,2; --quick: 0,1); the first tunes the learning rate")
    parser.add_argument("--lrs", default=None,
                        help="the learning-rate grid each head picks from on the validation split "
                             "(default: 0.001,0.003,0.01; --quick: 0.003,0.01)")
    parser.add_argument("--modality", choices=("events", "frames"), default="events",
                        help="the built-in dataset as events or frames (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs per run, on any data (default: 8, --quick: 4; "
                             "--trainer.max_epochs N on the command line also overrides the budget)")
    parser.add_argument("--train-size", type=int, default=None, help="training clips of the built-in dataset, or of any data module with a train_size option "
                             "such as chains (default: 1536, --quick: 384; --data.val_size sets validation's)")
    parser.add_argument("--test-size", type=int, default=None, help="test clips, as --train-size (default: 400, --quick: 160)")
    parser.add_argument("--output", type=Path, default=Path("evaluation-report"),
                        help="report folder (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="a small budget on any data: 2 seeds, 2 learning rates, one size, 4 epochs, 384/96/160 "
                             "train/validation/test clips kept in memory where the data module takes those "
                             "options (chains), 8-step 32 x 32 clips on the built-in dataset")
    parser.add_argument("--reuse-runs", action="store_true",
                        help="reuse the runs of an earlier call with the same --output that finished with the same "
                             "options (an interrupted comparison goes on where it stopped)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: what torch picks)")
    parser.epilog = ("Also takes perception train's --config NAME|FILE, --data.*, --model.* and --trainer.* options: "
                     "e.g. perception evaluate --config nmnist --data.root DIR --heads cfc,none")
