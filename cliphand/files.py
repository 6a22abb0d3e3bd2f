"""Atomic writes of the small files stages produce (metrics, plots data): temp file, then rename."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the result from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
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
