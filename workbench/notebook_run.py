"""Execute `notebooks/train.ipynb` with papermill and file the executed copy in its run folder.

The notebook reports its run folder through a small JSON file (the `report_file`
parameter), because only the Trainer inside the kernel has the path of the folder it created.
Used by `make demo`, `workbench run-notebook` and sweeps.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from workbench.errors import WorkbenchError

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TRAIN_NOTEBOOK = PROJECT_ROOT / "notebooks" / "train.ipynb"
EXECUTED_NAME = "train.ipynb"  # name of the executed notebook inside the run folder


class NotebookRunError(WorkbenchError):
    """The training notebook raised; the message carries the error and the run folder if any."""

    def __init__(self, message: str, run_dir: Path | None):
        super().__init__(message)
        self.run_dir = run_dir


def record_run(trainer, report_file: str) -> None:
    """Called from the notebook: write the run folder path to `report_file` (if given)."""
    if report_file and getattr(trainer, "run_dir", None) is not None:
        Path(report_file).write_text(json.dumps({"run_dir": str(Path(trainer.run_dir).resolve())}), encoding="utf-8")


def execute_training_notebook(config_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                              run_name: str = "", resume: str = "", log_output: bool = False,
                              timeout_s: int | None = None, notebook: Path = TRAIN_NOTEBOOK) -> Path:
    """Run the training notebook to completion and return its run folder.

    The executed notebook is saved as `<run folder>/train.ipynb`, also when training fails
    after the run folder was created; then NotebookRunError is raised with that folder.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    with tempfile.TemporaryDirectory(prefix="workbench-nb-") as tmp:
        report = Path(tmp) / "report.json"
        output = Path(tmp) / EXECUTED_NAME
        parameters = {
            "config_path": str(Path(config_path).resolve()) if config_path else "configs/default.yaml",
            "overrides": list(overrides),
            "run_name": run_name,
            "resume": str(Path(resume).resolve()) if resume else "",
            "report_file": str(report),
        }
        error: Exception | None = None
        try:
            pm.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(PROJECT_ROOT),
                                log_output=log_output, progress_bar=False, execution_timeout=timeout_s)
        except PapermillExecutionError as exc:
            error = exc

        run_dir = Path(json.loads(report.read_text())["run_dir"]) if report.is_file() else None
        if run_dir is not None and output.is_file():
            shutil.copy2(output, run_dir / EXECUTED_NAME)
            log.info("executed notebook saved to %s", run_dir / EXECUTED_NAME)

    if error is not None:
        where = f"; run folder {run_dir}" if run_dir else " before a run folder was created"
        raise NotebookRunError(f"training notebook failed: {error.ename}: {error.evalue}{where}", run_dir)
    if run_dir is None:
        raise NotebookRunError("training notebook finished without reporting a run folder", None)
    return run_dir
