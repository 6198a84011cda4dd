"""Command line: `workbench <command> ...` (also `python -m workbench <command> ...`).

User errors (WorkbenchError) print one line to stderr and exit with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from workbench.errors import WorkbenchError

log = logging.getLogger("workbench.cli")


def _train(args: argparse.Namespace) -> int:
    from workbench.trainer import train

    run_dir = train(args.config, args.overrides, resume=args.resume)
    print(f"Run folder: {run_dir}")
    return 0


def _run_notebook(args: argparse.Namespace) -> int:
    from workbench.notebook_run import execute_training_notebook

    # papermill reports the kernel's output through its logger; show it as it arrives.
    papermill_log = logging.getLogger("papermill")
    papermill_log.setLevel(logging.INFO)
    if not papermill_log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        papermill_log.addHandler(handler)
    run_dir = execute_training_notebook(args.config, args.overrides, run_name=args.name, log_output=True)
    print(f"Run folder: {run_dir}")
    return 0


def _make_dataset(args: argparse.Namespace) -> int:
    from workbench.synth.generate import generate_dataset

    summary = generate_dataset(Path(args.out), seed=args.seed, minutes=args.minutes,
                               languages=tuple(args.languages.split(",")), overwrite=args.overwrite)
    print(f"Dataset: {args.out} ({summary['clips']} clips, {summary['total_seconds']:.1f} s of audio, "
          f"generated in {summary['generation_seconds']:.1f} s)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from workbench.predict import predict_files

    for path in predict_files(args.checkpoint, args.audio, args.out, fmt=args.format, fps=args.fps,
                              smooth=args.smooth):
        print(path)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from workbench.evaluate_checkpoint import evaluate_checkpoint

    results, table, json_path = evaluate_checkpoint(args.checkpoint, args.data, out=args.out)
    print(table)
    print(f"Results: {json_path}")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from workbench.diagnose import diagnose_run, format_findings

    print(format_findings(diagnose_run(args.run)))
    return 0


def _tensorboard(args: argparse.Namespace) -> int:
    from workbench.tensorboard import run_tensorboard

    return run_tensorboard(args.logdir, host=args.host, port=args.port)


def _sweep(args: argparse.Namespace) -> int:
    from workbench.sweep import run_sweep

    folder = run_sweep(args.sweep_file, jobs=args.jobs)
    print(f"Sweep folder: {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Audio-to-ARKit-blendshape experiment workbench")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model and log the run")
    p.add_argument("-c", "--config", default=None, help="YAML config (default: configs/default.yaml, or the run's own when resuming)")
    p.add_argument("--resume", default=None, metavar="RUN_FOLDER", help="continue a run from its checkpoints/last.pt")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. training.max_epochs=5")
    p.set_defaults(func=_train)

    p = sub.add_parser("run-notebook", help="train by executing notebooks/train.ipynb with papermill")
    p.add_argument("-c", "--config", default=None, help="YAML config (default: configs/default.yaml)")
    p.add_argument("--name", default="", help="run name, appended to the run folder")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=_run_notebook)

    p = sub.add_parser("make-dataset", help="synthesize the default speech dataset offline with eSpeak NG")
    p.add_argument("out", help="output folder (missing or empty, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=3.0, help="total audio length in minutes")
    p.add_argument("--languages", default="en,ja", help="comma-separated: en, ja")
    p.set_defaults(func=_make_dataset)

    p = sub.add_parser("predict", help="audio files -> blendshape files")
    p.add_argument("checkpoint")
    p.add_argument("audio", nargs="+")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--format", choices=("livelink", "a2f-json"), default="livelink")
    p.add_argument("--fps", type=float, default=60.0, help="output frame rate (frames per second)")
    p.add_argument("--smooth", type=float, default=0.0, help="Gaussian smoothing sigma in output frames; 0 = none")
    p.set_defaults(func=_predict)

    p = sub.add_parser("evaluate", help="lip-sync metrics of a checkpoint on a labelled clip folder")
    p.add_argument("checkpoint")
    p.add_argument("data")
    p.add_argument("-o", "--out", default=None, help="JSON results file (default: <run folder>/evaluation/<data folder name>.json, "
                   "or <checkpoint stem>.<data folder name>.json beside a checkpoint outside a run)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("diagnose", help="find overfitting, explosions, stagnation and NaN in a run folder")
    p.add_argument("run")
    p.set_defaults(func=_diagnose)

    p = sub.add_parser("tensorboard", help="start TensorBoard on a runs folder (bound to 127.0.0.1)")
    p.add_argument("logdir", nargs="?", default="runs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6006)
    p.set_defaults(func=_tensorboard)

    p = sub.add_parser("sweep", help="run a parameter sweep of the training notebook with papermill")
    p.add_argument("sweep_file")
    p.add_argument("--jobs", type=int, default=None, help="parallel runs (default: the sweep file's jobs)")
    p.set_defaults(func=_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None) is None and args.command == "train" and not args.resume:
        args.config = str(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
    try:
        return args.func(args)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
