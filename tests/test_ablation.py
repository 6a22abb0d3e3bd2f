"""The ablation plan: which ``dvc exp run`` experiments ``python -m cliphand.ablation`` runs."""

from __future__ import annotations

from cliphand.ablation import ABLATIONS, command, runs, variant_seeds


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
