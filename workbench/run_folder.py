"""Run folders: `runs/<YYYY-MM-DD>/<HH-MM-SS>[-<name>]/`, unique, with an atomic status file.

Layout of a run folder:
    config.yaml      resolved config of the run
    status.json      {"state": running|completed|failed|interrupted, ...}
    train.log        `<asctime> - <LEVEL> - <message>` lines
    metrics.csv      one row per epoch
    logs/            TensorBoard event files
    checkpoints/     last.pt, best.pt
    samples/         fixed validation samples for the offline viewers
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.atomic import atomic_write_text  # noqa: F401 (re-exported for callers)
from workbench.errors import ConfigError

_NAME_OK = re.compile(r"^[A-Za-z0-9._=+,-]*$")


def check_run_root(root: str | Path) -> None:
    """Raise ConfigError unless `root` exists as a writable folder or can be created.

    Checked before any data is loaded, so an unusable run.root fails in seconds. Creates nothing.
    """
    root = Path(root)
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot create run.root {root}: {existing} is a file, not a folder; "
                          "choose another folder with run.root=...")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"run.root {root} is not writable ({existing} denies writing); "
                          "choose a writable folder with run.root=...")


def create_run_folder(root: str | Path, name: str = "", now: datetime | None = None) -> Path:
    """Create and return a new, empty run folder; never reuses an existing one.

    Several processes may start in the same second (parallel sweeps), so the folder is
    claimed with an exclusive mkdir and a numeric suffix is added on collision.
    """
    if name and not _NAME_OK.match(name):
        raise ConfigError(f"invalid run.name {name!r}; use letters, digits and . _ - = + , only")
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run.root {root}: {exc.strerror}; choose a writable folder") from None
    if not os.access(root, os.W_OK):
        raise ConfigError(f"run.root {root} is not writable; choose a writable folder with run.root=...")

    now = now or datetime.now()
    day = root / now.strftime("%Y-%m-%d")
    day.mkdir(exist_ok=True)
    base = now.strftime("%H-%M-%S") + (f"-{name}" if name else "")
    for attempt in range(1000):
        candidate = day / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise ConfigError(f"could not create a unique run folder under {day}")


def write_status(run_dir: Path, state: str, **extra: Any) -> None:
    """Write `status.json` atomically; NaN metrics become null so the file stays strict JSON."""
    status = {"state": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    atomic_write_text(Path(run_dir) / "status.json", json.dumps(_json_safe(status), indent=2) + "\n")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def read_status(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "status.json"
    if not path.is_file():
        return {"state": "unknown"}
    return json.loads(path.read_text(encoding="utf-8"))


def find_runs(root: str | Path) -> list[Path]:
    """Find the run folders under `root` (those with a config.yaml and logs/), oldest first."""
    root = Path(root)
    runs = [p.parent for p in root.glob("**/config.yaml") if (p.parent / "logs").is_dir()]
    return sorted(runs, key=lambda p: (p.stat().st_mtime, str(p)))
