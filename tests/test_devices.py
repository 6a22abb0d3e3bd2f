"""Device-dependent choices: mixed precision only where the device has native bf16 kernels."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import tiny_config

from cliphand import devices
from cliphand.config import TrainConfig
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.training import distributed
from cliphand.training.trainer import TrainStep

CPU = torch.device("cpu")


@pytest.mark.parametrize("fast, expected", [(True, "bf16"), (False, "none")])
def test_auto_amp_trains_in_bf16_only_where_the_device_has_its_kernels(hierarchy, monkeypatch, fast, expected):
    # On an AVX2-only CPU (no AVX-512, no AMX) oneDNN's bf16 falls back to reference kernels, ~13x slower.
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: fast)
    model = CLIPHand3D(tiny_config(text=None), hierarchy)
    step = TrainStep(model, TrainConfig(batch_size=4), "finetune", CPU, distributed.current())
    assert TrainConfig().amp == "auto"
    assert step.amp == expected
    with step.autocast:
        out = torch.nn.functional.linear(torch.rand(2, 3), torch.rand(4, 3))
    assert out.dtype == (torch.bfloat16 if fast else torch.float32) and not step.scaler.is_enabled()


def test_bf16_asked_of_a_device_without_its_kernels_is_kept_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: False)
    with caplog.at_level(logging.WARNING, logger="cliphand.devices"):
        assert devices.resolve_amp("bf16", CPU) == "bf16"
        assert devices.resolve_amp("fp16", CPU) == "fp16"
    assert [r.getMessage() for r in caplog.records] == [
        "amp: bf16 on cpu, which has no native bf16 kernels: expect steps ~10x slower (amp: auto avoids it)"
    ]

