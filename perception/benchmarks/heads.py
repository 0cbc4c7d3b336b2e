"""`perception benchmark heads`: every temporal head against the reference implementations.

Workload (issue 2): batch B=32, T=32 steps, D=64 input features, H=64 hidden units, per-sample
random dt, on the CPU with the threads torch is given. For every registered head and, in the same
run, for ncps CfC and LTC (their cells driven step by step, the time shaped (B, 1)), torch.nn.GRU
and LSTM (one call over the whole sequence) and an snntorch Linear + Leaky layer, it measures:

- train: forward + backward of the summed outputs to the parameters and the input (no optimizer
  step), per batch;
- infer: forward under no_grad, per batch;
- step:  one streaming step at batch 1 under no_grad.

The cfc training step is also timed against torch.nn.LSTM's, interleaved round by round in the
same run (the two see the same load on a shared machine): the median of the per-round ratios and
its quartiles, next to the target ``CFC_TRAIN_VS_LSTM_TARGET``.

Our cfc and ltc are timed as converted from the ncps cells (``heads.from_ncps``), so both sides
hold the same weights and the outputs are checked equal before the times are compared.
"""
from __future__ import annotations

import argparse
import platform

TARGETS = {
    "cfc_train_speedup_vs_ncps": 3.0,
    "cfc_infer_speedup_vs_ncps": 3.0,
    "ltc_train_speedup_vs_ncps": 3.0,
    "ltc_infer_speedup_vs_ncps": 3.0,
}
CFC_STEP_TARGET_US = 20.0
CFC_TRAIN_VS_LSTM_TARGET = 2.0  # cfc training step / torch.nn.LSTM's, at most


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=32, help="B (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=32, help="T (default: %(default)s)")
    parser.add_argument("--features", type=int, default=64, help="D (default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=64, help="H (default: %(default)s)")
    parser.add_argument("--heads", default=None, help="comma-separated heads (default: all registered)")
    parser.add_argument("--no-peers", action="store_true", help="skip ncps, torch and snntorch")
    parser.add_argument("--quick", action="store_true", help="shorter timing runs (noisier)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict:
    import torch
    from tqdm import tqdm

    from heads import create_head, head_entry, list_heads
    from perception.benchmarks._timing import format_table
    from perception.errors import PerceptionError

    names = list_heads() if args.heads is None else [n.strip() for n in args.heads.split(",") if n.strip()]
    for name in names:
        head_entry(name)  # unknown name -> HeadError listing the allowed ones
    if min(args.batch, args.steps, args.features, args.hidden) < 1:
        raise PerceptionError("--batch, --steps, --features and --hidden must all be at least 1")

    torch.manual_seed(args.seed)
    B, T, D, H = args.batch, args.steps, args.features, args.hidden
    work = _Workload(B, T, D, min_run_time=0.3 if args.quick else 1.0)
    rows: list[dict] = []
    checks: dict[str, float] = {}

    peers = [] if args.no_peers else _peer_cases(D, H)
    cases = [(name, lambda n=name: create_head(n, D, **_head_kwargs(n, H))) for name in names]
    for label, build in tqdm(cases + peers, desc="benchmark heads", unit="model"):
        module = build()
        rows.append({"model": label, **work.measure(module)})
        if label.startswith("ncps "):
            ours_label, ours, max_diff = _ours_from_ncps(label, module, work)
            checks[f"{ours_label}_vs_{label.replace(' ', '_')}_max_abs_diff"] = max_diff
            rows.append({"model": ours_label, **work.measure(ours)})

    by_model = {row["model"]: row for row in rows}
    results = {"workload": {"batch": B, "steps": T, "features": D, "hidden": H}, "rows": rows, "checks": checks}
    ratios = {}
    for ours, peer in (("cfc (from ncps)", "ncps CfCCell"), ("ltc (from ncps)", "ncps LTCCell")):
        if ours in by_model and peer in by_model:
            key = ours.split()[0]
            ratios[f"{key}_train_speedup_vs_ncps"] = by_model[peer]["train_ms"] / by_model[ours]["train_ms"]
            ratios[f"{key}_infer_speedup_vs_ncps"] = by_model[peer]["infer_ms"] / by_model[ours]["infer_ms"]
    if "cfc" in names and not args.no_peers:
        from perception.benchmarks import _peers

        versus = work.interleaved_train_ratio(create_head("cfc", D, **_head_kwargs("cfc", H)),
                                              _peers.TorchRNN("lstm", D, H))
        results["cfc_train_vs_lstm"] = versus
        ratios["cfc_train_vs_lstm"] = versus["median"]
    results["ratios"] = ratios
    results["environment"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }

    print(
        format_table(
            rows,
            [("model", "model", "s"), ("train_ms", "train ms", ".2f"), ("infer_ms", "infer ms", ".2f"),
             ("step_us", "step us (B=1)", ".1f"), ("params", "params", "d")],
        )
    )
    print(f"\nthreads: {torch.get_num_threads()}; B={B} T={T} D={D} H={H}")
    for key, value in checks.items():
        print(f"check {key}: {value:.2e}")
    verdicts = {}
    for key, target in TARGETS.items():
        if key in ratios:
            verdicts[key] = ratios[key] >= target
            print(f"{key}: {ratios[key]:.2f}x (target >= {target}x) {'PASS' if verdicts[key] else 'MISS'}")
    if "cfc_train_vs_lstm" in results:
        versus = results["cfc_train_vs_lstm"]
        verdicts["cfc_train_vs_lstm"] = versus["median"] <= CFC_TRAIN_VS_LSTM_TARGET
        print(f"cfc training step / torch.nn.LSTM's (interleaved, {versus['rounds']} rounds): "
              f"{versus['median']:.2f}x, quartiles [{versus['q1']:.2f}, {versus['q3']:.2f}] "
              f"({versus['cfc_ms']:.2f} ms vs {versus['lstm_ms']:.2f} ms; target <= {CFC_TRAIN_VS_LSTM_TARGET}x) "
              f"{'PASS' if verdicts['cfc_train_vs_lstm'] else 'MISS'}")
    if "cfc" in by_model:
        step = by_model["cfc"]["step_us"]
        verdicts["cfc_step_us"] = step <= CFC_STEP_TARGET_US
        print(f"cfc streaming step: {step:.1f} us (target <= {CFC_STEP_TARGET_US} us) "
              f"{'PASS' if verdicts['cfc_step_us'] else 'MISS'}")
    results["targets_met"] = verdicts
    return results


def _head_kwargs(name: str, hidden: int) -> dict:
    """The benchmark's size for a head: ``hidden_size`` for all but ``none``, which has no hidden state."""
    return {} if name == "none" else {"hidden_size": hidden}


class _Workload:
    """Fixed random inputs and the three measurements, shared by every model in the run."""

    def __init__(self, batch: int, steps: int, features: int, min_run_time: float):
        import torch

        generator = torch.Generator().manual_seed(1234)
        self.x = torch.randn(batch, steps, features, generator=generator)          # (B, T, D)
        self.dt = 0.2 + 1.6 * torch.rand(batch, steps, generator=generator)        # (B, T), mean 1
        self.x1 = self.x[:1, 0]                                                     # (1, D)
        self.dt1 = self.dt[:1, :1]                                                  # (1, 1)
        self.min_run_time = min_run_time

    def measure(self, model) -> dict:
        """Times of ``model`` (anything with the TemporalHead interface or a peer adapter)."""
        import torch

        from perception.benchmarks._timing import median_seconds

        params = [p for p in model.parameters() if p.requires_grad]
        train = self._train_fn(model)

        def infer() -> None:
            with torch.no_grad():
                model(self.x, self.dt)

        state = model.init_state(1)

        def step() -> None:
            with torch.no_grad():
                model.step(self.x1, self.dt1, state)

        return {
            "train_ms": 1e3 * median_seconds(train, self.min_run_time),
            "infer_ms": 1e3 * median_seconds(infer, self.min_run_time),
            "step_us": 1e6 * median_seconds(step, self.min_run_time),
            "params": sum(p.numel() for p in params),
        }

    def interleaved_train_ratio(self, model, reference) -> dict:
        """Training step of ``model`` over ``reference``'s, timed in alternating rounds.

        Returns the median and quartiles of the per-round ratios, each side's median time in ms
        and the number of rounds.
        """
        import statistics
        import time

        sides = [self._train_fn(model), self._train_fn(reference)]
        for fn in sides:  # warm up (TorchScript compiles on its first calls)
            for _ in range(3):
                fn()
        times: list[list[float]] = [[], []]
        deadline = time.perf_counter() + 2 * self.min_run_time
        while len(times[0]) < 10 or (time.perf_counter() < deadline and len(times[0]) < 200):
            for side, fn in enumerate(sides):
                start = time.perf_counter()
                fn()
                fn()
                times[side].append((time.perf_counter() - start) / 2)
        ratios = [a / b for a, b in zip(*times)]
        q1, median, q3 = statistics.quantiles(ratios, n=4)
        return {"median": median, "q1": q1, "q3": q3, "rounds": len(ratios),
                "cfc_ms": 1e3 * statistics.median(times[0]), "lstm_ms": 1e3 * statistics.median(times[1])}

    def _train_fn(self, model):
        """forward + backward of the summed outputs to the parameters and the input. The input
        requires grad as it would below a backbone: the backward pass includes dL/dx, and a head
        without parameters (none) still has a backward to time."""
        params = [p for p in model.parameters() if p.requires_grad]
        x = self.x.detach().requires_grad_(True)

        def train() -> None:
            for p in params:
                p.grad = None
            x.grad = None
            y, _ = model(x, self.dt)
            y.sum().backward()

        return train

    def outputs(self, model):
        import torch

        with torch.no_grad():
            return model(self.x, self.dt)[0]


def _ours_from_ncps(label: str, adapter, work: _Workload):
    """Our head with the ncps cell's weights, and the largest output difference on the workload."""
    from heads import from_ncps

    ours = from_ncps(adapter.cell)
    name = "cfc" if "CfC" in label else "ltc"
    diff = (work.outputs(ours) - work.outputs(adapter)).abs().max().item()
    return f"{name} (from ncps)", ours, diff


def _peer_cases(features: int, hidden: int) -> list:
    """(label, builder) for each peer, adapted to our head interface by _peers."""
    from perception.benchmarks import _peers

    return [
        ("ncps CfCCell", lambda: _peers.NcpsCell.cfc(features, hidden)),
        ("ncps LTCCell", lambda: _peers.NcpsCell.ltc(features, hidden)),
        ("torch.nn.GRU", lambda: _peers.TorchRNN("gru", features, hidden)),
        ("torch.nn.LSTM", lambda: _peers.TorchRNN("lstm", features, hidden)),
        ("snntorch Leaky", lambda: _peers.SnntorchLeaky(features, hidden)),
    ]
