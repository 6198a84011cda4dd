"""`workbench tensorboard` and `show_tensorboard` serving a real tiny run on 127.0.0.1.

The servers run with a PATH that lacks the venv, as in a shell or Jupyter kernel where the
venv was never activated, and are stopped by process id at the end of each test.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tiny_run import make_tiny_dataset, one_torch_thread, tiny_overrides
from workbench import cli
from workbench.config import load_config
from workbench.errors import WorkbenchError
from workbench.tensorboard import find_free_port, run_tensorboard, show_tensorboard
from workbench.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def runs_root(facegood_dir, tmp_path_factory) -> Path:
    """A runs folder with one finished 1-epoch run."""
    root = tmp_path_factory.mktemp("tensorboard")
    data = make_tiny_dataset(facegood_dir, root / "data", seconds=6.0)
    overrides = tiny_overrides(data, root / "runs", root / "cache", training__max_epochs=1, logging__log_freq=1,
                               logging__histogram_freq=0, logging__figure_freq=0, logging__audio_freq=0)
    with one_torch_thread():
        Trainer(load_config(None, overrides)).fit()
    return root / "runs"


def env_without_venv() -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    return env


def wait_for_scalar_tag(port: int, tag: str, process: subprocess.Popen | None = None) -> dict:
    """Poll TensorBoard's scalar tag list until some run lists `tag`; returns the JSON."""
    url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"TensorBoard exited early with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                last = json.loads(response.read())
            if any(tag in tags for tags in last.values()):
                return last
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not list {tag} within {SERVER_START_TIMEOUT_S} s; last reply: {last}")


def assert_group_exits(group_id: int, timeout_s: float = 15) -> None:
    """Wait until no process is left in the launcher's process group (TensorBoard included)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(group_id, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail(f"processes of group {group_id} still running {timeout_s} s after the launcher stopped")


def test_missing_folder_raises(tmp_path):
    with pytest.raises(WorkbenchError, match="TensorBoard log folder not found: .*nothing-here"):
        run_tensorboard(tmp_path / "nothing-here", port=find_free_port())


def test_cli_missing_folder_exits_2(tmp_path, capsys):
    assert cli.main(["tensorboard", str(tmp_path / "nothing-here")]) == 2
    assert capsys.readouterr().err.startswith("error: TensorBoard log folder not found: ")


def test_port_in_use_raises(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(WorkbenchError, match=f"cannot listen on 127.0.0.1:{port}"):
            run_tensorboard(tmp_path, port=port)


@pytest.mark.parametrize("stop_signal,status", [(signal.SIGINT, 130), (signal.SIGTERM, 130)],
                         ids=["ctrl_c", "sigterm"])
def test_cli_serves_run_and_stops(runs_root, stop_signal, status):
    port = find_free_port()
    process = subprocess.Popen([sys.executable, "-m", "workbench", "tensorboard", str(runs_root), "--port", str(port)],
                               cwd=REPO_ROOT, env=env_without_venv(), start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        tags = wait_for_scalar_tag(port, "train/loss", process)
        assert len(tags) == 1
        assert next(iter(tags)).endswith("/logs")
        process.send_signal(stop_signal)  # to the launcher alone: it must stop its TensorBoard child
        output, _ = process.communicate(timeout=30)
        assert_group_exits(process.pid)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == status
    assert f"Starting TensorBoard: {Path(sys.executable).parent / 'tensorboard'} --logdir {runs_root}" in output
    assert f"--host 127.0.0.1 --port {port}" in output
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def test_show_tensorboard_outside_ipython_logs_command(runs_root, caplog):
    with caplog.at_level(logging.INFO, logger="workbench"):
        port = show_tensorboard(runs_root, port=6123)
    assert port == 6123
    assert f"--logdir {runs_root} --host 127.0.0.1 --port 6123" in caplog.text


def test_show_tensorboard_in_ipython_starts_server(runs_root):
    # A fresh IPython shell in a child process whose PATH lacks the venv; it prints the port
    # and the server's pid, and leaves the server running for this test to check and stop.
    script = textwrap.dedent(f"""
        from IPython.core.interactiveshell import InteractiveShell
        from tensorboard import manager
        from workbench.tensorboard import show_tensorboard
        InteractiveShell.instance()
        port = show_tensorboard({str(runs_root)!r}, height=500)
        pid = next(info.pid for info in manager.get_all() if info.port == port)
        print("SERVER", port, pid)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env_without_venv(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    port, pid = (int(v) for v in result.stdout.split("SERVER ", 1)[1].split())
    try:
        wait_for_scalar_tag(port, "train/loss")
    finally:
        os.kill(pid, signal.SIGTERM)
