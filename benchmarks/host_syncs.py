"""Device-to-host reads per optimizer step during a real Trainer run on CPU.

Every `torch.Tensor` method that copies a value to the host (item, cpu, tolist, numpy,
__float__, __int__, __bool__, __index__, __format__, __repr__) is wrapped with a counter for
the whole run. CPU tensors never really sync, so this counts the calls that would each wait
for the device on a GPU. Counts are split by phase: the batch loop (`steps`) and the
per-epoch parts (epoch end, validation, logging, media, checkpoints).

Target: in the batch loop at most one read per `logging.log_freq` steps (the Trainer reads
loss, grad norm and the NaN record together at each log point), NaN checks included.

    python benchmarks/host_syncs.py [--epochs 3] [--log-freq 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (SyncCounter, header_lines, load_average, phased_trainer,  # noqa: E402
                               verdict, write_section, write_synthetic_clips)
from workbench.config import load_config  # noqa: E402
from workbench.trainer import Trainer  # noqa: E402


def count_host_reads(data_root: Path, run_root: Path, overrides: list[str], device: str = "cpu") -> dict:
    """Train once under a SyncCounter; returns counts by phase, method and call site.

    `log_points` is the number of optimizer steps whose global step is a multiple of
    `logging.log_freq`, i.e. the number of step-level reads the target allows.
    """
    cfg = load_config(None, [f"data.root={data_root}", f"run.root={run_root}", f"training.device={device}",
                             f"features.cache_dir={run_root}/cache", "logging.progress_bar=false", *overrides])
    counter = SyncCounter()
    trainer = phased_trainer(Trainer, counter)(cfg)
    with counter:
        trainer.fit()
    steps = trainer.global_step
    return {
        "steps": steps,
        "epochs": cfg.training.max_epochs,
        "log_freq": cfg.logging.log_freq,
        "log_points": steps // cfg.logging.log_freq,
        "by_phase": dict(counter.by_phase),
        "by_method": dict(counter.by_method),
        "by_site": dict(counter.by_site),
        "host_resident": dict(counter.host_resident),
        "cuda_syncs_by_phase": dict(counter.cuda_syncs_by_phase),
        "total": counter.total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--log-freq", type=int, default=10, help="logging.log_freq (the default config's is 10)")
    parser.add_argument("--device", default="cpu", help="training.device; on cuda torch's sync detector also counts")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    load = load_average()
    overrides = [f"training.max_epochs={args.epochs}", f"logging.log_freq={args.log_freq}",
                 "data.window_seconds=0.5", "data.window_hop_seconds=0.1", "training.batch_size=4",
                 "model.hidden=32"]
    with tempfile.TemporaryDirectory(prefix="host-syncs-") as tmp:
        data = write_synthetic_clips(Path(tmp) / "data", count=3, seconds=8.0)
        result = count_host_reads(data, Path(tmp) / "runs", overrides, args.device)

    phases = result["by_phase"]
    step_reads = phases.get("steps", 0)
    per_epoch = {k: v / result["epochs"] for k, v in phases.items() if k not in ("steps", "setup", "finish")}
    ok = step_reads <= result["log_points"]
    command = f"python benchmarks/host_syncs.py --epochs {args.epochs} --log-freq {args.log_freq} --device {args.device}"
    lines = ["## Host syncs per step", ""] + header_lines(command, load) + [
        f"Real Trainer on CPU, default config except {', '.join(overrides)}; 3 synthetic 8 s clips "
        f"(1 held out), media at the default cadence (histograms and figures every epoch, audio every "
        f"5 epochs), validation every epoch. {result['steps']} optimizer steps, log_freq "
        f"{result['log_freq']} -> {result['log_points']} log points.",
        "",
        "Counted calls: Tensor.item, cpu, tolist, numpy, __float__, __int__, __bool__, __index__, "
        "__format__, __repr__ (a call nested inside another counts once). On CPU they do not wait "
        "for anything; each would be a host sync on a GPU, except reads of tensors that are "
        "already host copies (for example the items of the metric sums after their one `.cpu()`), "
        "which this method cannot tell apart and counts too.",
        "",
        "| phase | reads in run | per epoch |",
        "|---|---|---|",
    ]
    for name in sorted(phases, key=lambda k: -phases[k]):
        per = f"{per_epoch[name]:.1f}" if name in per_epoch else ""
        lines.append(f"| {name} | {phases[name]} | {per} |")
    lines += [
        "",
        f"Batch loop: {step_reads} reads in {result['steps']} steps = "
        f"{step_reads / max(result['steps'], 1):.3f} per step; target <= 1 per {result['log_freq']} steps "
        f"(<= {result['log_points']}): {verdict(ok)}.",
        "",
        "Reads by call site (first frame inside `workbench/`):",
        "",
        "| call site | reads |",
        "|---|---|",
    ]
    for site, count in sorted(result["by_site"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| `{site}` | {count} |")
    lines += ["", "Not counted above, because these tensors are on the CPU on every device "
              "(torch.optim step counters, DataLoader sampler permutations):", "",
              "| call site | reads |", "|---|---|"]
    for site, count in sorted(result["host_resident"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| `{site}` | {count} |")
    if args.device != "cpu":
        lines += ["", f"torch.cuda sync detector (set_sync_debug_mode), by phase: {result['cuda_syncs_by_phase']}"]
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        write_section("host_syncs", text)


if __name__ == "__main__":
    main()
