"""Progress display of the notebooks: live bars in JupyterLab, none when run headless.

In JupyterLab the tqdm widget bars update live. Under papermill the saved notebook keeps
each bar's first text ("0%"), one frozen line per epoch, so headless runs turn the bars off
and rely on the epoch blocks the Trainer logs to stdout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

PROGRESS_KEY = "logging.progress_bar"


def has_live_frontend() -> bool:
    """Return True when a Jupyter server (JupyterLab, Notebook 7) started this kernel.

    jupyter_server 2.x sets JPY_SESSION_NAME for the kernels it starts; papermill and
    nbclient start kernels without it.
    """
    # NOTE: other frontends that render widgets (VS Code) count as headless here, so they
    # show the epoch blocks without progress bars.
    return bool(os.environ.get("JPY_SESSION_NAME"))


def progress_override(overrides: Sequence[str]) -> list[str]:
    """Return the `logging.progress_bar=...` override for this session, or [] if the user set it.

    The value is given even when true, so a run first made headless and resumed in Lab
    gets its bars back.
    """
    if any(item.split("=", 1)[0].strip() == PROGRESS_KEY for item in overrides):
        return []
    return [f"{PROGRESS_KEY}={'true' if has_live_frontend() else 'false'}"]
