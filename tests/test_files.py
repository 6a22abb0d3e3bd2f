"""Atomic writes: the result appears whole, with the usual permissions, and a failure leaves nothing."""

from __future__ import annotations

import json
import os
import stat

import pytest

from cliphand.files import write_json, write_text


def test_written_files_get_the_umask_permissions_not_mkstemps(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "metrics" / "m.json", {"b": 1, "a": 2})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert list(json.loads(path.read_text())) == ["a", "b"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = write_text(tmp_path / "m.json", "old")
    with pytest.raises(TypeError):
        write_text(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
