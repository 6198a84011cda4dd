"""Start TensorBoard on run folders: from the command line, or inline in a notebook.

Both paths start the `tensorboard` program installed beside the running Python interpreter
(the venv's `bin/`), so they work in shells and Jupyter kernels whose PATH lacks the venv.
The server binds to 127.0.0.1 unless the caller asks for another host.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from workbench.errors import WorkbenchError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6006
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def tensorboard_executable() -> list[str]:
    """Return the argv prefix that starts TensorBoard for this interpreter.

    That is the `tensorboard` script next to `sys.executable` when it exists, else
    `python -m tensorboard.main` with this interpreter (same package, no PATH lookup).
    """
    script = Path(sys.executable).parent / ("tensorboard.exe" if os.name == "nt" else "tensorboard")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "tensorboard.main"]


def tensorboard_command(logdir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> list[str]:
    """Return the full argv that serves `logdir` on host:port."""
    return [*tensorboard_executable(), "--logdir", str(Path(logdir).resolve()), "--host", host, "--port", str(port)]


def format_command(argv: list[str]) -> str:
    """Return `argv` as one line that can be pasted into a POSIX shell."""
    return " ".join(shlex.quote(part) for part in argv)


def find_free_port(host: str = DEFAULT_HOST) -> int:
    """Return a TCP port that is free on `host` right now (another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _check_logdir(logdir: str | Path) -> Path:
    path = Path(logdir).expanduser()
    if not path.is_dir():
        raise WorkbenchError(f"TensorBoard log folder not found: {path}; pass a runs folder or a run's logs/ folder")
    return path.resolve()


def _check_port_free(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise WorkbenchError(f"invalid port {port}; choose one between 1 and 65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As TensorBoard's own server does: a port whose old connections sit in TIME-WAIT
        # after a browser closed them is still usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise WorkbenchError(f"cannot listen on {host}:{port} ({exc.strerror}); "
                                 "choose another port with --port") from None


def run_tensorboard(logdir: str | Path = "runs", host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> int:
    """Serve `logdir` with TensorBoard until it exits or Ctrl-C; returns its exit status.

    Raises WorkbenchError before starting when the folder is missing or the port is taken.
    """
    from workbench.logging_mixin import install_console_handler

    install_console_handler()  # the CLI has no other log handler; this prints the URL
    path = _check_logdir(logdir)
    _check_port_free(host, port)
    if host not in _LOOPBACK_HOSTS:
        log.warning("TensorBoard will listen on %s: anyone who can reach this machine can read the runs", host)

    argv = tensorboard_command(path, host, port)
    log.info("Starting TensorBoard: %s", format_command(argv))
    log.info("Open http://%s:%d/ in a browser; stop with Ctrl-C", host, port)
    process = subprocess.Popen(argv)
    # SIGTERM (kill, a notebook's "!kill") stops TensorBoard too, as Ctrl-C does; Python
    # allows signal handlers only in the main thread.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main_thread else None
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The terminal sends SIGINT to the child too; terminate covers a signal sent to us alone.
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _put_venv_on_path() -> None:
    """Prepend this interpreter's bin folder to PATH, where the `%tensorboard` magic looks."""
    bin_dir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if bin_dir not in parts:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *[p for p in parts if p]])


def show_tensorboard(logdir: str | Path = "runs", port: int | None = None, height: int = 600) -> int:
    """Start TensorBoard through the `%tensorboard` magic and show it inline; returns the port.

    The server listens on 127.0.0.1 and on a free port unless `port` is given; `height` is
    the inline frame's height in pixels. Outside IPython this only logs the command to run.
    Raises WorkbenchError when the folder is missing or TensorBoard fails to start.
    """
    path = _check_logdir(logdir)
    port = find_free_port() if port is None else port
    ip = _get_ipython()
    if ip is None:
        log.info("Not running under IPython; start TensorBoard with: %s",
                 format_command(tensorboard_command(path, DEFAULT_HOST, port)))
        return port

    from IPython.utils.capture import capture_output
    from tensorboard import manager, notebook

    _put_venv_on_path()
    ip.run_line_magic("load_ext", "tensorboard")
    # The magic always draws an 800 px frame (tensorboard 2.21, notebook._display), so its
    # output is captured and the frame is drawn again below at the requested height.
    args = f"--logdir {shlex.quote(str(path))} --host {DEFAULT_HOST} --port {port}"
    with capture_output(display=True) as captured:
        ip.run_line_magic("tensorboard", args)
    if not any(info.port == port for info in manager.get_all()):
        messages = [captured.stdout, captured.stderr,
                    *(str(o.data.get("text/plain", "")) for o in captured.outputs)]
        detail = " ".join(m.strip() for m in messages if m and m.strip())
        raise WorkbenchError(f"TensorBoard did not start on port {port}: {detail or 'no output'}")
    notebook.display(port=port, height=height)
    return port


def _get_ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()
