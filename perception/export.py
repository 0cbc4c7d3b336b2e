"""``perception export CKPT --format onnx|torchscript``: the single-step model as a standalone file.

The exported graph is one streaming step: inputs ``x`` (1, C, H, W) (a frame or a voxel grid, as the
checkpoint's preprocessing makes it), ``dt`` (1, 1) seconds and the head's state tensors
``state_0..``; outputs ``logits`` (1, K) and the new state tensors, in the same order. A fresh state
is all zeros for every head. The checkpoint's config (classes, preprocessing as
``data.Preprocessing.to_dict()``, time_scale, state shapes) is written beside it as JSON, so a
runtime needs nothing from this project.

The check runs the exported file (onnxruntime, or torch.jit.load) against the PyTorch model step by
step over a stream, carrying the state, and reports the largest difference of the logits.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor, nn

from perception._files import atomic_write
from perception.checkpoint import LoadedCheckpoint, load_checkpoint
from perception.errors import PerceptionError

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
TOLERANCE = 1e-4


def _leaves(state) -> list[Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


class StepGraph(nn.Module):
    """model.step with the state as a flat list of tensors: (x, dt, *state) -> (logits, *state)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.tuple_state = isinstance(model.init_state(1), tuple)

    def forward(self, x: Tensor, dt: Tensor, *state: Tensor):
        logits, new = self.model.step(x, dt, tuple(state) if self.tuple_state else state[0])
        return (logits, *_leaves(new))


def example_inputs(loaded: LoadedCheckpoint) -> tuple[Tensor, ...]:
    model = loaded.model
    width, height = loaded.preprocessing.frame_size
    x = torch.zeros(1, model.in_channels, height, width)
    dt = torch.full((1, 1), float(model.time_scale))
    state = model.init_state(1)
    return (x, dt, *_leaves(state))


def export(loaded: LoadedCheckpoint, path: Path, fmt: str) -> Path:
    """Write the step graph of ``loaded`` to ``path`` (atomically), plus ``<path>.json`` with its config."""
    model = loaded.model.eval()
    inputs = example_inputs(loaded)
    graph = StepGraph(model).eval()
    n_state = len(inputs) - 2
    names_in = ["x", "dt", *(f"state_{i}" for i in range(n_state))]
    names_out = ["logits", *(f"new_state_{i}" for i in range(n_state))]
    with torch.no_grad():
        if fmt == "torchscript":
            traced = torch.jit.trace(graph, inputs, check_trace=False)
            atomic_write(path, lambda tmp: traced.save(str(tmp)))
        else:
            def write(tmp: Path) -> None:
                torch.onnx.export(graph, inputs, str(tmp), input_names=names_in, output_names=names_out,
                                  dynamo=False, opset_version=17)
            atomic_write(path, write)
            import onnx

            names_in = [i.name for i in onnx.load(str(path)).graph.input]  # unused inputs are pruned
    meta = {"format": fmt, "inputs": names_in, "outputs": names_out, "classes": loaded.classes,
            "preprocessing": loaded.preprocessing.to_dict(), "model": model.config(),
            "state_shapes": [list(t.shape) for t in inputs[2:]]}
    atomic_write(path.with_suffix(path.suffix + ".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
    return path


def stream_inputs(loaded: LoadedCheckpoint, source: str, steps: int):
    """(x, dt) pairs of a recorded stream, preprocessed exactly as ``perception infer`` does."""
    from perception.streaming.runner import StreamRunner
    from perception.streaming.sources import open_source

    opened = open_source(source, loaded.preprocessing)
    try:
        for _, x, _, dt in StreamRunner(loaded, opened).inputs(max_steps=steps):
            yield x, torch.full((1, 1), dt)
    finally:
        opened.close()


def random_inputs(loaded: LoadedCheckpoint, steps: int, seed: int = 0):
    """(x, dt) pairs of random inputs and dt between 0.2 and 2.2 time scales."""
    shape = example_inputs(loaded)[0].shape
    rng = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        yield torch.rand(shape, generator=rng), float(loaded.model.time_scale) * (0.2 + 2 * torch.rand(1, 1, generator=rng))


def check(loaded: LoadedCheckpoint, path: Path, fmt: str, pairs) -> tuple[float, int]:
    """Largest |logits difference| between the exported file and PyTorch, stepping both over the
    (x, dt) ``pairs`` and carrying each one's state; and the number of steps."""
    model = loaded.model.eval()
    inputs = example_inputs(loaded)
    state_torch = model.init_state(1)
    state_export = [t.clone() for t in inputs[2:]]
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}  # an input the graph does not use (dt) is pruned

        def run(x, dt, state):
            values = {"x": x, "dt": dt, **{f"state_{i}": s for i, s in enumerate(state)}}
            outs = session.run(None, {k: v.numpy() for k, v in values.items() if k in names})
            return torch.from_numpy(outs[0]), [torch.from_numpy(o) for o in outs[1:]]
    else:
        loaded_module = torch.jit.load(str(path))

        def run(x, dt, state):
            outs = loaded_module(x, dt, *state)
            return outs[0], list(outs[1:])

    worst, count = 0.0, 0
    with torch.no_grad():
        for x, dt in pairs:
            ref, state_torch = model.step(x, dt, state_torch)
            got, state_export = run(x, dt, state_export)
            worst, count = max(worst, float((ref - got).abs().max())), count + 1
    return worst, count


def run(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise PerceptionError(f"--steps must be at least 1, got {args.steps}")
    path = args.output or args.checkpoint.with_suffix(FORMATS[args.format])
    if path.is_dir() or not path.name:
        raise PerceptionError(f"--output {path}: is a folder; expected a file name")
    if path.resolve() == args.checkpoint.resolve():
        raise PerceptionError(f"--output {path}: is the checkpoint; writing there would destroy it (give --output)")
    loaded = load_checkpoint(args.checkpoint)
    try:
        export(loaded, path, args.format)
    except (RuntimeError, torch.jit.Error, NotImplementedError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise PerceptionError(f"{args.checkpoint}: the {loaded.model.head_name} head could not be exported to "
                              f"{args.format} ({first})") from None
    print(f"wrote {path} and {path}.json")
    if not args.no_check:
        pairs = (stream_inputs(loaded, args.stream, args.steps) if args.stream
                 else random_inputs(loaded, args.steps))
        worst, steps = check(loaded, path, args.format, pairs)
        where = args.stream or "random inputs"
        verdict = "PASS" if worst <= TOLERANCE else "FAIL"
        print(f"check on {where}: max |logits - PyTorch| over {steps} steps = {worst:.2e} "
              f"(tolerance {TOLERANCE:g}) {verdict}")
        if worst > TOLERANCE:
            raise PerceptionError(f"{path}: the exported model differs from PyTorch by {worst:.2e} (> {TOLERANCE:g})")
    return 0
