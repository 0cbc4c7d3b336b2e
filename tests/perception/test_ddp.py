"""DDP on two CPU processes (gloo): different data per process, one consistent checkpoint, synced metrics."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perception.checkpoint import load_checkpoint, read_checkpoint

SCRIPT = Path(__file__).with_name("ddp_train_script.py")


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(SCRIPT), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]

    # Each process trained on its own shard: 32 clips / 2 ranks = 16 per epoch, 2 epochs.
    for epoch in (0, 1):
        seen0, seen1 = ({h for e, h in r["seen"] if e == epoch} for r in ranks)
        assert len(seen0) == len(seen1) == 16
        assert seen0.isdisjoint(seen1)
        assert len(seen0 | seen1) == 32  # together they covered the whole training split

    # Gradients were averaged: both processes end with the same weights, and the checkpoint holds them.
    assert ranks[0]["param_sum"] == pytest.approx(ranks[1]["param_sum"], rel=1e-6, abs=1e-6)
    assert ranks[0]["param_abs_sum"] == pytest.approx(ranks[1]["param_abs_sum"], rel=1e-6)
    loaded = load_checkpoint(ranks[0]["checkpoint"])
    params = torch.cat([p.detach().flatten() for p in loaded.model.parameters()]).double()
    assert float(params.abs().sum()) == pytest.approx(ranks[0]["param_abs_sum"], rel=1e-6)
    assert read_checkpoint(ranks[0]["checkpoint"])["global_step"] == 2 * 16 // 4

    # val/acc was gathered over both processes: it equals the accuracy of the whole split in one process.
    assert ranks[0]["val_acc"] == ranks[1]["val_acc"] == pytest.approx(ranks[0]["val_acc_one_process"])
