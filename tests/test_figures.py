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
    trace = [{"step": s, "epoch": s / 4, "lr": 1e-3, "train_loss_joints": 0.0, "train_loss_verts": 0.03 / s,
              "train_loss_total": 0.05 / s} for s in range(1, 9)]
    assert curves.training_curves(history, trace, tmp_path / "curves.png", "finetune").is_file()
    losses = figures[0].axes[0]
    assert [t.get_text() for t in losses.get_legend().get_texts()] == ["verts", "total"]


def test_training_curves_draw_the_step_trace_within_epochs(tmp_path, monkeypatch):
    """A one-epoch phase (fine-tuning) is a loss curve over its steps, not one point; validation sits at the epoch's end."""
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    history = [{"epoch": 1, "train_loss_total": 0.08, "val_pa_mpjpe_mm": 17.6, "val_pa_mpvpe_mm": 19.6}]
    trace = [{"step": s, "epoch": s / 20, "lr": 1e-3, "train_loss_total": 0.1 - s / 1000} for s in range(1, 21)]
    curves.training_curves(history, trace, tmp_path / "curves.png", "finetune")
    losses, errors = figures[0].axes[:2]
    (line,) = losses.get_lines()
    assert list(line.get_xdata()) == [t["epoch"] for t in trace]
    assert [list(l.get_xdata()) for l in errors.get_lines()] == [[1], [1]]
    assert losses.get_xlim()[0] == 0
