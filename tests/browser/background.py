"""Start a server in its own process group, wait until it answers HTTP, and stop the whole group.

JupyterLab starts kernels and `workbench tensorboard` starts a `tensorboard` child, so each
server runs in a new session and is stopped with `os.killpg`: that reaches the children too,
also when the test fails half way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def _log_tail(log_path: Path, chars: int = 3000) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return text[-chars:] or "(no output)"


def wait_for_http(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    """Poll `url` until it answers with any HTTP status; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with status {process.returncode} before serving "
                               f"{url}; its output:\n{_log_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # the server answered, only not with 200 (for example 403 without a token)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    raise RuntimeError(f"{process.args[0]} did not serve {url} within {timeout_s:.0f} s; "
                       f"its output:\n{_log_tail(log_path)}")


def _descendants(pid: int) -> list[int]:
    """PIDs of all live descendants of `pid`, read from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process exited while we listed
        # The command name in parentheses may contain spaces; the parent PID follows its ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def stop_tree(process: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Stop the server's process group and every descendant, SIGTERM first and SIGKILL after `grace_s`.

    Jupyter starts each kernel in a session of its own, outside the server's process group.
    SIGTERM lets the server shut its kernels down, and the SIGKILL pass over the descendants
    listed beforehand catches any kernel that outlives it.
    """
    descendants = _descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in descendants:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def background_server(argv: list[str], ready_url: str, log_path: Path, *, cwd: Path | None = None,
                      env: dict[str, str] | None = None, timeout_s: float = 60.0):
    """Run `argv` until the block ends; yields the Popen once `ready_url` answers.

    Output goes to `log_path`, whose tail is in the error when the server fails to start.
    """
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_http(ready_url, process, log_path, timeout_s)
            yield process
        finally:
            stop_tree(process)
