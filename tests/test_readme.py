"""The README's promises: its two set-up commands, CI running the test one, numbers from metrics."""

from __future__ import annotations

import re
from pathlib import Path

from cliphand.report import render

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    quick_start = ROOT.joinpath("README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quick_start, re.S)
    return [line for block in blocks for line in block.splitlines() if line and not line.startswith("#")]


def test_quick_start_is_two_commands_one_repro_one_tests():
    commands = _commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("dvc repro") and "pip install" in commands[0]
    assert commands[1].endswith("pytest") and "pip install" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = ROOT.joinpath(".ci/run").read_text().splitlines()
    assert _commands()[1] in ci


def test_readme_numbers_match_the_committed_metrics():
    readme = ROOT.joinpath("README.md").read_text()
    assert render(readme, ROOT / "metrics") == readme, "README is stale: run `cliphand report`"
    for block in ("data", "zeroshot", "evaluate", "speed"):
        body = readme.split(f"<!-- cliphand:{block} -->", 1)[1].split(f"<!-- /cliphand:{block} -->", 1)[0]
        assert "|" in body, f"README block {block} is empty"


def test_readme_and_recipe_links_resolve():
    """Every relative link and image of the README and docs/recipe.md names a file in the repository."""
    for doc in ("README.md", "docs/recipe.md"):
        path = ROOT / doc
        targets = re.findall(r"\]\(([^)#\s]+)\)", path.read_text())
        assert targets, doc
        missing = [t for t in targets if "://" not in t and not (path.parent / t).exists()]
        assert not missing, f"{doc}: {missing}"
