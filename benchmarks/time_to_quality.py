"""Time to quality: wall and CPU time of the default config to reach its best validation
`mean_correlation` on the FACEGOOD clips, for each model kind (gru, conv, transformer).

Each run is the real CLI (`python -m workbench train ...`) with the default config and one
clip held out (`data.val_clips=1`), one run at a time. Times come from the run's train.log
timestamps: from `Starting training...` to the epoch block of the best epoch (so feature
extraction and setup are left out; they are reported separately). The best value comes from
metrics.csv. CPU time is the child's user + system time (resource.getrusage).

    python benchmarks/time_to_quality.py [--kinds gru conv transformer] [--data ../shared/data/facegood_audio2face]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO_ROOT, header_lines, load_average, write_section  # noqa: E402

EPOCH_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - INFO - Epoch +(\d+)/(\d+)\s*$")
START_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - INFO - Starting training\.\.\.")


def _stamp(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")


def read_run(run_dir: Path) -> dict:
    """Best val mean_correlation, its epoch, and seconds from training start to each epoch end."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val_mean_correlation")]
    if not rows:
        raise SystemExit(f"{run_dir}/metrics.csv has no val_mean_correlation values")
    best = max(rows, key=lambda r: float(r["val_mean_correlation"]))

    start, epoch_end = None, {}
    for line in (run_dir / "train.log").read_text(encoding="utf-8").splitlines():
        if start is None and (m := START_LINE.match(line)):
            start = _stamp(m.group(1))
        elif m := EPOCH_LINE.match(line):
            epoch_end[int(m.group(2)) - 1] = _stamp(m.group(1))  # the block shows epoch + 1
    if start is None or not epoch_end:
        raise SystemExit(f"{run_dir}/train.log lacks 'Starting training...' or epoch blocks")
    best_epoch = int(best["epoch"])
    return {
        "best": float(best["val_mean_correlation"]),
        "best_epoch": best_epoch,
        "epochs": len(epoch_end),
        "to_best_s": (epoch_end[best_epoch] - start).total_seconds(),
        "train_s": (max(epoch_end.values()) - start).total_seconds(),
        "final": float(rows[-1]["val_mean_correlation"]),
    }


def run_kind(kind: str, data: str, root: Path, cache: Path, extra: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    command = [sys.executable, "-m", "workbench", "train", f"data.root={data}", f"model.kind={kind}",
               f"run.root={root}", f"run.name={kind}", f"features.cache_dir={cache}",
               "logging.progress_bar=false", *extra]
    log_path = root / f"{kind}.out"
    with open(log_path, "w") as out:
        code = subprocess.run(command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit(f"{kind} run failed (exit {code}); see {log_path}:\n{log_path.read_text()[-2000:]}")
    run_dir = next(root.glob(f"*/*-{kind}"))
    result = read_run(run_dir)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result.update(kind=kind, wall_s=wall, cpu_s=cpu, run_dir=str(run_dir))
    # CPU time to the best epoch, pro rata of the training time (an estimate: setup is in cpu_s).
    result["cpu_to_best_s"] = cpu * result["to_best_s"] / max(wall, 1e-9)
    result["per_cpu_minute"] = result["best"] / (result["cpu_to_best_s"] / 60)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["gru", "conv", "transformer"])
    parser.add_argument("--data", default="../shared/data/facegood_audio2face")
    parser.add_argument("--workdir", type=Path, help="where runs go (default: a new folder under /tmp)")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra key=value config overrides for every run")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="time-to-quality-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cache = workdir / "cache"
    load = load_average()
    results, loads = [], [load]
    for kind in args.kinds:
        result = run_kind(kind, args.data, workdir, cache, list(args.overrides))
        results.append(result)
        loads.append(load_average())
        print(f"{kind}: best {result['best']:.4f} at epoch {result['best_epoch'] + 1}, "
              f"{result['to_best_s']:.0f} s to best, {result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU",
              flush=True)
    report(results, args, loads)


def report(results: list[dict], args, loads: list[float]) -> None:
    command = "python benchmarks/time_to_quality.py --kinds " + " ".join(args.kinds) + f" --data {args.data}"
    if args.overrides:
        command += " " + " ".join(args.overrides)
    best = max(results, key=lambda r: r["per_cpu_minute"])
    lines = ["## Time to quality (FACEGOOD, default config)", ""] + header_lines(command, loads[0]) + [
        "Default config (20 epochs, cosine LR, batch 16, 2 s windows), one FACEGOOD clip held out "
        "for validation, one run at a time through the CLI. Time to best = train.log time from "
        "`Starting training...` to the epoch block of the best val `mean_correlation` (setup and "
        "the cold feature cache of the first run are outside it). CPU to best = the run's CPU "
        "time pro rata (an estimate). Quality per CPU-minute = best value / CPU minutes to best. "
        f"One run per kind, so the times carry the machine's noise (load average "
        f"{min(loads):.2f}-{max(loads):.2f}).",
        "",
        "| model.kind | best val mean_correlation | best epoch | final value | time to best (s) | "
        "training time (s) | process wall (s) | CPU (s) | quality per CPU-minute |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['kind']} | {r['best']:.4f} | {r['best_epoch'] + 1}/{r['epochs']} | {r['final']:.4f} | "
                     f"{r['to_best_s']:.0f} | {r['train_s']:.0f} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
                     f"{r['per_cpu_minute']:.3f} |")
    top_quality = max(results, key=lambda r: r["best"])
    lines += ["", f"Best quality: `{top_quality['kind']}` ({top_quality['best']:.4f}). Best quality per "
              f"CPU-minute: `{best['kind']}`."]
    if best["kind"] != "gru" or top_quality["kind"] != "gru":
        lines.append("The current default (`model.kind: gru`) is not the best on "
                     + ("either count." if best["kind"] != "gru" and top_quality["kind"] != "gru" else
                        "quality per CPU-minute." if best["kind"] != "gru" else "absolute quality."))
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        write_section("time_to_quality", text)


if __name__ == "__main__":
    main()
