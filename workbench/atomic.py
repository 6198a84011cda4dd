"""Atomic file writes: write a temporary file in the target's folder, then rename it over.

`os.replace` within one folder is atomic on POSIX file systems, so a reader sees the old
file or the new one, never half of either, and a crash while writing keeps the old file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", fsync: bool = True) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on success it replaces `path`.

    `mode` is "w" (UTF-8 text, no newline translation) or "wb". With `fsync`, the data is on
    disk before the rename, which matters for checkpoints and status files after a power loss.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)
