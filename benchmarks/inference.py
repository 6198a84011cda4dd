"""Inference speed and memory: `workbench.predict.predict_file` real-time factor.

The NVIDIA sample clips are concatenated (repeated as needed) into a 60 s and a 10 min
16 kHz WAV in a temporary folder. A checkpoint of a model with default settings and the
`--kind` given (GRU unless set) is written with the workbench's own checkpoint code. Its
weights are random, because the speed does not depend on the values. Each measurement runs
in a fresh process: load the checkpoint, then
time `predict_file` (read, resample, features, chunked model, 60 fps output) and record the
peak RSS. RTF = prediction seconds / audio seconds. Process start, imports and checkpoint
loading are not timed. Target: RTF <= 0.005; peak memory bounded on long files.

    python benchmarks/inference.py [--rounds 3] [--threads 0] [--kind gru]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import REPO_ROOT, fmt_spread, header_lines, load_average, spread, verdict, write_section  # noqa: E402

SAMPLES = REPO_ROOT.parent / "shared" / "data" / "nvidia_a2f3d_samples_audio"
DURATIONS = {"60 s": 60.0, "10 min": 600.0}
TARGET_RTF = 0.005


def write_long_wav(path: Path, seconds: float) -> None:
    """Concatenate the sample clips (in name order, repeated) to exactly `seconds` at 16 kHz."""
    from workbench.audio import read_audio

    clips = [read_audio(p, 16000).numpy() for p in sorted(SAMPLES.glob("*.wav"))]
    if not clips:
        raise SystemExit(f"no .wav files in {SAMPLES}")
    needed = int(seconds * 16000)
    pieces, total = [], 0
    while total < needed:
        for clip in clips:
            pieces.append(clip)
            total += len(clip)
    sf.write(path, np.concatenate(pieces)[:needed], 16000)


def write_checkpoint(path: Path, kind: str = "gru") -> None:
    from workbench.checkpoint import save_checkpoint
    from workbench.features import FeatureSettings
    from workbench.model import BlendshapeModel

    model = BlendshapeModel(kind=kind)
    save_checkpoint(path, {"model": model.state_dict(), "model_hparams": dict(model.hparams),
                           "feature_settings": dict(FeatureSettings().__dict__)})


def measure_one(checkpoint: Path, audio: Path, out: Path, threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
    from workbench.predict import load_predictor, predict_file

    predictor = load_predictor(checkpoint)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    started = time.perf_counter()
    values = predict_file(predictor, audio, fps=60.0)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps({"seconds": seconds, "frames": len(values), "peak_mib": peak,
                               "peak_before_mib": rss_before, "threads": torch.get_num_threads()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads; 0 keeps torch's default")
    parser.add_argument("--kind", default="gru", choices=["gru", "conv", "transformer"],
                        help="model.kind of the checkpoint (other model settings at their defaults)")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("CHECKPOINT", "AUDIO", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        measure_one(Path(args.one[0]), Path(args.one[1]), Path(args.one[2]), args.threads)
        return

    load = load_average()
    loads = [load]
    results: dict[str, list[dict]] = {name: [] for name in DURATIONS}
    with tempfile.TemporaryDirectory(prefix="inference-") as tmp:
        tmp = Path(tmp)
        checkpoint = tmp / "default_model.pt"
        write_checkpoint(checkpoint, args.kind)
        files = {}
        for name, seconds in DURATIONS.items():
            files[name] = tmp / f"{int(seconds)}s.wav"
            write_long_wav(files[name], seconds)
        for r in range(args.rounds):
            for name in DURATIONS:  # interleaved: one of each per round
                out = tmp / "result.json"
                command = [sys.executable, __file__, "--threads", str(args.threads),
                           "--one", str(checkpoint), str(files[name]), str(out)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"prediction of {files[name]} failed:\n{done.stderr[-3000:]}")
                result = json.loads(out.read_text())
                result["rtf"] = result["seconds"] / DURATIONS[name]
                results[name].append(result)
                print(f"round {r + 1} {name}: {result['seconds']:.2f} s, RTF {result['rtf']:.4f}, "
                      f"peak RSS {result['peak_mib']:.0f} MiB", flush=True)
            loads.append(load_average())

    rtf = {name: [r["rtf"] for r in rows] for name, rows in results.items()}
    peaks = {name: [r["peak_mib"] for r in rows] for name, rows in results.items()}
    before = {name: [r["peak_before_mib"] for r in rows] for name, rows in results.items()}
    ratio_long_short = [rtf["10 min"][i] / rtf["60 s"][i] for i in range(args.rounds)]
    threads = results["60 s"][0]["threads"]
    command = f"python benchmarks/inference.py --rounds {args.rounds} --threads {args.threads} --kind {args.kind}"
    lines = [f"## Inference, model.kind={args.kind}", ""] + header_lines(command, load) + [
        f"Default model settings with kind={args.kind} (hidden 128), `predict_file` at 60 fps with the "
        f"default chunking, {threads} torch thread(s), {args.rounds} interleaved rounds, one fresh process "
        f"per measurement. Audio: the NVIDIA sample clips concatenated and repeated to 60 s and 600 s. "
        f"Load average over the rounds {min(loads):.2f}-{max(loads):.2f}.",
        "",
        "| file | prediction s, median (min-max) | RTF, median (min-max) | target | result | "
        "peak RSS MiB (after load -> after predict) |",
        "|---|---|---|---|---|---|",
    ]
    for name in DURATIONS:
        seconds = [r["seconds"] for r in results[name]]
        ok = spread(rtf[name])[0] <= TARGET_RTF
        lines.append(f"| {name} | {fmt_spread(seconds, 2)} | {fmt_spread(rtf[name], 4)} | <= {TARGET_RTF} | "
                     f"{verdict(ok)} | {spread(before[name])[0]:.0f} -> {spread(peaks[name])[0]:.0f} |")
    growth = spread(peaks["10 min"])[0] - spread(peaks["60 s"])[0]
    lines += ["", f"RTF of 10 min over RTF of 60 s, pairwise per round: {fmt_spread(ratio_long_short, 2)}. "
              f"Peak RSS grows by {growth:.0f} MiB from 60 s to 10 min of audio (10x the length)."]
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        write_section(f"inference-{args.kind}", text)


if __name__ == "__main__":
    main()
