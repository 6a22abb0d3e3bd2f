"""Atomic writes: every file the project writes (metrics, plots data, figures, checkpoints, model
files, the mesh hierarchy) goes to a temp file beside its target, is fsynced, renamed over the
target and the folder fsynced, so a kill or a power cut leaves the old file or the new one, never
half of one; a failure removes the temp file; the result gets the umask's permissions.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class DiskSpaceError(OSError):
    """Too little free space for what a stage is about to write; raised before it writes anything."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temp path beside ``path`` for the block to write; it becomes ``path`` when the block ends.

    The folder is created. On success the temp file gets the umask's permissions (mkstemp's 0600
    would hide it from other users), is fsynced, renamed over ``path`` and the folder fsynced (the
    rename is durable only then). On any error, the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, creating its folder."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
    return path


def write_json(path: Path | str, data: Any) -> Path:
    """JSON with sorted keys, so reruns diff cleanly."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: Path | str, rows: Sequence[dict[str, Any]]) -> Path:
    """Rows of dicts as CSV; the columns are the union of the keys, in first-seen order."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def read_csv(path: Path | str) -> list[dict[str, float]]:
    """``write_csv``'s numeric rows back, a dict each; a row's empty cells (columns it lacked) left out."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def check_free_space(folder: Path | str, needed: int, what: str) -> None:
    """A DiskSpaceError naming ``folder`` unless it has ``needed`` bytes free for ``what``.

    Checked before a large write, so a full disk stops a stage with one line instead of a
    half-written array (and an ENOSPC deep inside numpy) after minutes of work.
    """
    folder = Path(folder)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskSpaceError(
            f"{folder}: {what} need {needed / 1e9:.2f} GB but only {free / 1e9:.2f} GB is free; free some space first",
        )

