"""Parameter sweeps: run `notebooks/train.ipynb` once per point with papermill, in parallel.

A sweep file (YAML):

    name: lr-hidden              # optional; default: the file name without .yaml
    base_config: configs/default.yaml   # optional; relative to the project root
    jobs: 2                      # parallel runs (default 1)
    fixed:                       # overrides shared by every point (dotted keys or nested maps)
      data.root: ../shared/data/facegood_audio2face
      training.max_epochs: 4
    grid:                        # cartesian product of the lists ...
      training.lr: [0.001, 0.003]
      model.hidden: [32, 64]
    # points:                    # ... or an explicit list of override maps instead of grid
    #   - {training.lr: 0.001}

Every point becomes one run folder inside one sweep folder,
`<run.root>/sweeps/<YYYY-MM-DD>/<HH-MM-SS>-<name>/`, where `run.root` comes from `fixed` or the
base config. Each run folder keeps its executed notebook (`train.ipynb`). A point whose config
is invalid, or whose notebook fails, is recorded with its error and the other points go on.
The sweep folder gets `sweep.yaml` (a copy of the input), `results.csv` (one row per point,
rewritten as points finish), `results.png` and `sweep.json` (timing and counts).
TensorBoard on the sweep folder compares the runs in its HPARAMS tab.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from workbench import run_folder
from workbench.config import load_config
from workbench.errors import ConfigError, WorkbenchError
from workbench.notebook_run import PROJECT_ROOT, NotebookRunError, execute_training_notebook

log = logging.getLogger(__name__)

SWEEP_KEYS = {"name", "base_config", "jobs", "fixed", "grid", "points"}
RESERVED_KEYS = {"run.root", "run.name"}  # set per point by the sweep
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# Metrics summarised per point: metrics.csv column -> True when larger is better.
SUMMARY_METRICS = {"loss": False, "val_loss": False, "val_mae": False, "val_mean_correlation": True}
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._=+,-]")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file; `points` hold each point's own overrides, without `fixed`."""

    path: Path
    name: str
    base_config: Path
    jobs: int
    fixed: dict[str, Any]
    points: list[dict[str, Any]]
    varied_keys: list[str] = field(default_factory=list)


def load_sweep(sweep_file: str | Path) -> SweepSpec:
    """Parse and check a sweep file; raises ConfigError naming the file and the bad entry."""
    path = Path(sweep_file)
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}; pass a YAML file such as configs/sweeps/example.yaml")
    import yaml  # PyYAML, installed with OmegaConf

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"sweep file {path} must contain a mapping with grid or points")
    unknown = sorted(set(data) - SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in sweep file {path}; "
                          f"allowed: {', '.join(sorted(SWEEP_KEYS))}")

    name = str(data.get("name") or path.stem)
    if _LABEL_UNSAFE.search(name):
        raise ConfigError(f"invalid sweep name {name!r} in {path}; use letters, digits and . _ - = + , only")
    base_config = _project_path(data.get("base_config") or "configs/default.yaml")
    if not base_config.is_file():
        raise ConfigError(f"base_config {base_config} of sweep file {path} not found; "
                          "give a path relative to the project root")
    jobs = data.get("jobs", 1)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ConfigError(f"invalid jobs {jobs!r} in sweep file {path}; expected an integer >= 1")

    fixed = _flatten(_mapping(data.get("fixed") or {}, f"fixed in {path}"))
    if "run.name" in fixed:
        raise ConfigError(f"fixed sets run.name in {path}, but the sweep names each run itself; remove it")
    points = _expand_points(data, path)
    for i, point in enumerate(points):
        reserved = sorted(RESERVED_KEYS & set(point))
        if reserved:
            raise ConfigError(f"point {i} of {path} sets {', '.join(reserved)}, which the sweep sets itself; "
                              "put run.root under fixed")
    varied = list(dict.fromkeys(key for point in points for key in point))
    return SweepSpec(path=path, name=name, base_config=base_config, jobs=jobs, fixed=fixed, points=points,
                     varied_keys=varied)


def _expand_points(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    has_grid, has_points = data.get("grid") is not None, data.get("points") is not None
    if has_grid == has_points:
        raise ConfigError(f"sweep file {path} must have exactly one of grid (lists to combine) "
                          "or points (a list of override maps)")
    if has_grid:
        grid = _flatten(_mapping(data["grid"], f"grid in {path}"), keep_lists=True)
        if not grid:
            raise ConfigError(f"grid in {path} is empty; give at least one key with a list of values")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"grid key {key} in {path} needs a non-empty list of values, got {values!r}; "
                                  "put single values under fixed")
        keys = list(grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]

    points = data["points"]
    if not isinstance(points, list) or not points:
        raise ConfigError(f"points in {path} must be a non-empty list of override maps")
    return [_flatten(_mapping(p, f"point {i} in {path}")) for i, p in enumerate(points)]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of config keys to values, got {value!r}")
    return value


def _flatten(values: Mapping[str, Any], prefix: str = "", keep_lists: bool = False) -> dict[str, Any]:
    """Nested maps -> dotted keys (`{training: {lr: 1}}` -> `{"training.lr": 1}`)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{full}.", keep_lists))
        else:
            flat[full] = value
    return flat


def _project_path(value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def _override_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def point_overrides(spec: SweepSpec, point: Mapping[str, Any], sweep_dir: Path) -> list[str]:
    """Dotlist overrides of one point: fixed, then the point, then the sweep folder as run.root."""
    items = {k: v for k, v in spec.fixed.items() if k != "run.root"}
    items.update(point)
    return [f"{k}={_override_value(v)}" for k, v in items.items()] + [f"run.root={sweep_dir}"]


def point_label(index: int, point: Mapping[str, Any]) -> str:
    """Short, folder-safe name of a point: `p01-lr=0.003,hidden=32`."""
    short = [key.rsplit(".", 1)[-1] for key in point]
    names = short if len(set(short)) == len(short) else list(point)
    parts = ",".join(f"{n}={_override_value(v)}" for n, v in zip(names, point.values()))
    label = _LABEL_UNSAFE.sub("_", f"p{index:02d}-{parts}" if parts else f"p{index:02d}")
    return label[:80]


# -- running ------------------------------------------------------------------------------


def run_sweep(sweep_file: str | Path, jobs: int | None = None) -> Path:
    """Run every point of a sweep file and return the sweep folder.

    `jobs` overrides the file's `jobs`. Raises ConfigError before any run starts when the
    sweep file is invalid or no point has a valid config.
    """
    from workbench.logging_mixin import install_console_handler

    install_console_handler()  # sweep progress goes to stdout, as training logs do
    spec = load_sweep(sweep_file)
    if jobs is not None and jobs < 1:
        raise ConfigError(f"invalid jobs {jobs}; expected an integer >= 1")
    jobs = min(jobs or spec.jobs, len(spec.points))

    root = _sweep_root(spec)
    # Check every point before any run starts; a bad point is recorded, the others still run.
    placeholder = root / "sweeps" / "pending"  # run.root is not checked by load_config
    invalid = {i: _config_error(spec, point, placeholder) for i, point in enumerate(spec.points)}
    invalid = {i: message for i, message in invalid.items() if message}
    if len(invalid) == len(spec.points):
        raise ConfigError(f"no point of sweep {spec.path} has a valid config; first error: {invalid[0]}")

    sweep_dir = run_folder.create_run_folder(root / "sweeps", spec.name)
    shutil.copy2(spec.path, sweep_dir / "sweep.yaml")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log.info("Sweep %s: %d points, %d in parallel, %d torch threads each; folder %s",
             spec.name, len(spec.points), jobs, threads, sweep_dir)

    rows: dict[int, dict[str, Any]] = {}
    lock = threading.Lock()

    def record(index: int, row: dict[str, Any]) -> None:
        with lock:
            rows[index] = row
            _write_results(sweep_dir, spec, rows)

    for index, message in invalid.items():
        log.error("point %s skipped: %s", point_label(index, spec.points[index]), message)
        record(index, _result_row(spec, index, "failed", f"invalid config: {message}", None, 0.0))

    started = time.perf_counter()
    to_run = [i for i in range(len(spec.points)) if i not in invalid]
    with _thread_limit(threads), ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="sweep") as pool:
        futures = {pool.submit(_run_point, spec, i, sweep_dir): i for i in to_run}
        for future in as_completed(futures):
            row = future.result()  # _run_point records failures in the row instead of raising
            record(futures[future], row)
    wall = time.perf_counter() - started

    results = _write_results(sweep_dir, spec, rows)
    _write_plot(sweep_dir, results)
    summary = _summary(results, wall, jobs, threads)
    run_folder.atomic_write_text(sweep_dir / "sweep.json", json.dumps(summary, indent=2) + "\n")
    log.info("Sweep %s finished in %.1f s (sum of point wall times %.1f s): %d completed, %d failed; "
             "results in %s", spec.name, wall, summary["sum_point_wall_s"], summary["completed"],
             summary["failed"], sweep_dir / "results.csv")
    return sweep_dir


def _sweep_root(spec: SweepSpec) -> Path:
    if "run.root" in spec.fixed:
        return _project_path(str(spec.fixed["run.root"]))
    return _project_path(str(load_config(spec.base_config).run.root))


def _config_error(spec: SweepSpec, point: Mapping[str, Any], sweep_dir: Path) -> str:
    try:
        load_config(spec.base_config, point_overrides(spec, point, sweep_dir))
    except ConfigError as exc:
        return str(exc)
    return ""


@contextmanager
def _thread_limit(threads: int) -> Iterator[None]:
    """Set OMP_NUM_THREADS and MKL_NUM_THREADS for kernels started inside the block.

    papermill kernels copy this process's environment when they start, and torch reads
    these variables at start-up, so parallel runs share the cores instead of each taking
    all of them. Values the user already set are kept.
    """
    added = [name for name in THREAD_ENV_VARS if name not in os.environ]
    for name in added:
        os.environ[name] = str(threads)
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _run_point(spec: SweepSpec, index: int, sweep_dir: Path) -> dict[str, Any]:
    point = spec.points[index]
    label = point_label(index, point)
    log.info("point %s started", label)
    started = time.perf_counter()
    run_dir: Path | None = None
    try:
        run_dir = execute_training_notebook(spec.base_config, point_overrides(spec, point, sweep_dir),
                                            run_name=label)
        state, error = "completed", ""
    except NotebookRunError as exc:
        run_dir, state, error = exc.run_dir, "failed", str(exc)
    except (WorkbenchError, OSError, RuntimeError) as exc:
        # A kernel that cannot start or dies: record it, so the other points still run.
        state, error = "failed", f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - started
    if error:
        log.error("point %s failed after %.1f s: %s", label, wall, error)
    else:
        log.info("point %s completed in %.1f s: %s", label, wall, run_dir)
    return _result_row(spec, index, state, error, run_dir, wall)


def _result_row(spec: SweepSpec, index: int, state: str, error: str, run_dir: Path | None,
                wall: float) -> dict[str, Any]:
    point = spec.points[index]
    row: dict[str, Any] = {"point": point_label(index, point)}
    row.update({key: point.get(key) for key in spec.varied_keys})
    row.update({"status": state, "error": error, "wall_s": round(wall, 2), "train_s": math.nan, "epochs": 0,
                "run_dir": str(run_dir) if run_dir else ""})
    for name in SUMMARY_METRICS:
        row[f"final_{name}"] = math.nan
        row[f"best_{name}"] = math.nan
    if run_dir is None:
        return row

    status = run_folder.read_status(run_dir)
    row["train_s"] = status.get("seconds", math.nan)  # training time inside the kernel
    metrics = _read_metrics(run_dir)
    row["epochs"] = len(metrics)
    for name, larger_is_better in SUMMARY_METRICS.items():
        if name not in metrics:
            continue
        values = pd.to_numeric(metrics[name], errors="coerce").dropna()
        if values.empty:
            continue
        row[f"final_{name}"] = float(values.iloc[-1])
        row[f"best_{name}"] = float(values.max() if larger_is_better else values.min())
    return row


def _read_metrics(run_dir: Path) -> pd.DataFrame:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    return pd.read_csv(path)


def _write_results(sweep_dir: Path, spec: SweepSpec, rows: Mapping[int, dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame([rows[i] for i in sorted(rows)])
    run_folder.atomic_write_text(sweep_dir / "results.csv", table.to_csv(index=False))
    return table


def _write_plot(sweep_dir: Path, results: pd.DataFrame) -> None:
    from workbench.curves import figure_png, sweep_figure

    tables = {row.point: _read_metrics(Path(row.run_dir)) for row in results.itertuples() if row.run_dir}
    (sweep_dir / "results.png").write_bytes(figure_png(sweep_figure(results, tables, metric="val_loss")))


def _summary(results: pd.DataFrame, wall: float, jobs: int, threads: int) -> dict[str, Any]:
    return {
        "points": int(len(results)),
        "completed": int((results["status"] == "completed").sum()),
        "failed": int((results["status"] != "completed").sum()),
        "jobs": jobs,
        "torch_threads_per_job": threads,
        "wall_s": round(wall, 2),
        "sum_point_wall_s": round(float(results["wall_s"].sum()), 2),
        "sum_train_s": round(float(pd.to_numeric(results["train_s"], errors="coerce").sum()), 2),
    }


def read_results(sweep_dir: str | Path) -> pd.DataFrame:
    """Load a sweep folder's `results.csv` (one row per point)."""
    path = Path(sweep_dir) / "results.csv"
    if not path.is_file():
        raise WorkbenchError(f"{path} not found; pass a sweep folder made by run_sweep")
    return pd.read_csv(path, keep_default_na=True).fillna({"error": "", "run_dir": ""})
