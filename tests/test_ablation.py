"""The ablation plan: which ``dvc exp run`` experiments ``python -m cliphand.ablation`` runs."""

from __future__ import annotations

from pathlib import Path

import yaml

from cliphand.ablation import ABLATIONS, command, runs, variant_seeds

ROOT = Path(__file__).resolve().parents[1]


def test_the_contrastive_question_is_run_over_three_seeds_and_the_mesh_variant_over_one():
    seeds = variant_seeds(list(ABLATIONS), None)
    assert seeds == {"full": [0, 1, 2], "no-contrastive": [0, 1, 2], "direct-778": [0]}
    # The full model's seed 0 is the workspace's own `dvc repro`: not run again.
    assert runs(seeds, workspace_seed=0) == [
        ("full", 1), ("full", 2), ("no-contrastive", 0), ("no-contrastive", 1), ("no-contrastive", 2),
        ("direct-778", 0),
    ]


def test_seeds_given_on_the_command_line_apply_to_every_variant_named():
    seeds = variant_seeds(["full", "direct-778"], [0, 5])
    assert seeds == {"full": [0, 5], "direct-778": [0, 5]}
    assert runs(seeds, workspace_seed=0) == [("full", 5), ("direct-778", 0), ("direct-778", 5)]
    assert command("no-contrastive", 2)[-4:] == ["-S", "pretrain.seed=2", "-S", "finetune.seed=2"]


def test_an_ablation_runs_the_stages_its_table_reads_and_not_the_benchmark():
    cmd = command("full", 1)
    targets = cmd[cmd.index("-n") + 2: cmd.index("-S")]
    assert targets == ["evaluate", "zeroshot"]
    stages = yaml.safe_load(ROOT.joinpath("dvc.yaml").read_text())["stages"]
    assert set(targets) <= set(stages) and "benchmark" in stages
