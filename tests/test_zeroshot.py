"""Tests of zero-shot image→prompt retrieval."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliphand.zeroshot import (
    AxisFeatures,
    batch_probabilities,
    retrieval_metrics,
    zeroshot_table,
)


def _unit(rows: int, dim: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=g), dim=1)


def test_perfect_features_retrieve_their_prompt() -> None:
    feats = _unit(64)
    prompts = [f"prompt {i}" for i in range(64)]
    out = retrieval_metrics(feats, feats.clone(), prompts, logit_scale=100.0, batch_size=16)
    assert out["top1"] == 1.0 and out["top5"] == 1.0
    assert out["mean_prob"] > 0.99
    assert out["chance"] == pytest.approx(1 / 16)
    assert out["batches"] == 4 and out["dropped"] == 0


def test_random_features_sit_at_chance() -> None:
    m, n = 4096, 16
    prompts = [f"prompt {i}" for i in range(m)]
    out = retrieval_metrics(_unit(m, seed=1), _unit(m, seed=2), prompts, 100.0, batch_size=n)
    assert out["chance"] == pytest.approx(1 / n)
    assert out["top1"] == pytest.approx(1 / n, abs=0.02)
    assert out["top5"] == pytest.approx(5 / n, abs=0.04)
    assert out["top5"] >= out["top1"]


def test_duplicate_prompts_count_as_right() -> None:
    m, n = 32, 8
    prompts = [f"ordering {i // 2}" for i in range(m)]  # rows 2k and 2k+1 share a prompt
    text = _unit(m)
    partner = torch.arange(m) ^ 1
    pose = text[partner]  # each image matches its duplicate's text feature best, not its own row's
    out = retrieval_metrics(pose.numpy(), text.numpy(), prompts, logit_scale=100.0, batch_size=n)
    assert out["top1"] == 1.0
    assert out["mean_prob"] > 0.99
    assert out["chance"] == pytest.approx(2 / n)
    # With distinct texts the same features would all be wrong.
    distinct = retrieval_metrics(pose, text, [str(i) for i in range(m)], 100.0, batch_size=n)
    assert distinct["top1"] == 0.0


def test_last_incomplete_batch_is_dropped() -> None:
    m, n = 100, 32
    pose, text = _unit(m), _unit(m)
    pose[96:] = _unit(4, seed=9)  # only the dropped rows mismatch
    out = retrieval_metrics(pose, text, [str(i) for i in range(m)], logit_scale=100.0, batch_size=n)
    assert out["batches"] == 3 and out["dropped"] == 4
    assert out["top1"] == 1.0


def test_top5_is_top_n_for_small_batches() -> None:
    pose, text = _unit(12, seed=3), _unit(12, seed=4)
    out = retrieval_metrics(pose, text, list("abcdefghijkl"), 10.0, batch_size=4)
    assert out["top5"] == 1.0


def test_bad_inputs_raise() -> None:
    feats = _unit(20)
    prompts = [str(i) for i in range(20)]
    with pytest.raises(ValueError, match="batch_size.*20"):
        retrieval_metrics(feats, feats, prompts, 100.0, batch_size=32)
    with pytest.raises(ValueError, match="prompts"):
        retrieval_metrics(feats, feats, prompts[:10], 100.0, batch_size=4)
    with pytest.raises(ValueError, match="L2-normalised"):
        retrieval_metrics(2 * feats, feats, prompts, 100.0, batch_size=4)
    with pytest.raises(ValueError, match="must match"):
        retrieval_metrics(feats, _unit(20, dim=10), prompts, 100.0, batch_size=4)


def test_batch_probabilities_for_the_figure() -> None:
    feats = _unit(40)
    probs = batch_probabilities(feats, feats, logit_scale=100.0, batch_size=16, batch_index=1)
    assert probs.shape == (16, 16)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == np.arange(16)).all()
    with pytest.raises(ValueError, match="batch_index"):
        batch_probabilities(feats, feats, 100.0, batch_size=16, batch_index=2)  # 2 full batches


def test_table_has_every_axis_and_batch_size() -> None:
    feats = _unit(64)
    axis = AxisFeatures(feats, feats, [str(i) for i in range(64)], 100.0)
    table = zeroshot_table({"x": axis, "y": axis, "z": axis}, batch_sizes=(16, 32, 64))
    assert set(table) == {"x", "y", "z"}
    assert set(table["z"]) == {16, 32, 64}
    assert table["z"][64]["batches"] == 1 and table["x"][16]["top1"] == 1.0
    with pytest.raises(ValueError, match="batch_size"):
        zeroshot_table({"x": axis}, batch_sizes=(128,))
