"""The stages' figures show what their metrics hold."""

from __future__ import annotations

import matplotlib.pyplot as plt

from cliphand.figures import curves


def test_training_curves_leave_out_the_loss_terms_that_are_off(tmp_path, monkeypatch):
    """A term weighted 0 (fine-tuning's pose terms) logs 0 at every epoch: no point on the log axis, no legend entry."""
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    history = [{"epoch": e, "train_loss_joints": 0.0, "train_loss_verts": 0.03 / e, "train_loss_total": 0.05 / e,
                "val_pa_mpjpe_mm": 17.0} for e in (1, 2)]
    assert curves.training_curves(history, tmp_path / "curves.png", "finetune").is_file()
    losses = figures[0].axes[0]
    assert [t.get_text() for t in losses.get_legend().get_texts()] == ["verts", "total"]
