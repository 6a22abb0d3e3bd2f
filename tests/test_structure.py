"""The pipeline's structure: each stage's dvc.yaml deps are exactly the code it runs, the package has
no import cycle, and a clean clone's `dvc status` agrees with the committed lock."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from imports import ROOT, closure, find_cycle, module_file


def _stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", list(_stages()))
def test_stage_deps_are_exactly_the_project_files_it_imports(stage):
    spec = _stages()[stage]
    module = f"cliphand.stages.{stage}"
    assert spec["cmd"] == f"python -m {module}"
    imported = {str(module_file(m).relative_to(ROOT)) for m in closure(module)}
    listed = {d for d in spec["deps"] if d.startswith("cliphand/")}
    assert not imported - listed, f"dvc.yaml {stage}: code the stage imports is missing from its deps: {sorted(imported - listed)}"
    assert not listed - imported, f"dvc.yaml {stage}: deps the stage no longer imports: {sorted(listed - imported)}"


def test_the_package_has_no_import_cycle():
    cycle = find_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_a_figure_change_does_not_retrain():
    """The point of exact deps: no figure module (the training curves' included) is a training dep."""
    for stage in ("pretrain", "finetune"):
        deps = set(_stages()[stage]["deps"])
        assert not {d for d in deps if d.startswith("cliphand/figures/")} | (deps & {"cliphand/report.py"})


@pytest.mark.slow
def test_a_clean_clone_agrees_with_the_committed_lock(tmp_path):
    """`dvc status` in a fresh clone: pipeline data is absent (not pulled), but no dep that git
    tracks (code, presets), no param and no command differs from dvc.lock."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    tracked = set(subprocess.run(["git", "ls-files"], cwd=clone, capture_output=True, text=True).stdout.split())
    result = subprocess.run(["dvc", "status", "--json"], cwd=clone, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    changed = {}
    for stage, entries in json.loads(result.stdout or "{}").items():
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            deps = {p: s for p, s in entry.get("changed deps", {}).items()
                    if p in tracked or any(t.startswith(p.rstrip("/") + "/") for t in tracked)}
            other = {k: v for k, v in entry.items() if k in ("changed cmd", "changed params")}
            if deps or other:
                changed[stage] = {**({"changed deps": deps} if deps else {}), **other}
    assert not changed, f"a clean clone's dvc status differs from dvc.lock: {changed}"
