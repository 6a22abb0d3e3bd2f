"""Which device a stage runs on (params ``<phase>.device``), and device-dependent kernel choices."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

# Longest sequence for which training on the CPU takes the math attention kernel (below).
MATH_ATTENTION_MAX_TOKENS = 256


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto`` → CUDA when present, else CPU; under several processes CUDA is ``cuda:<local rank>``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    if name == "cuda" and local_rank is not None:
        name = f"cuda:{local_rank}"
    return torch.device(name)


def attention_kernel(device: torch.device, tokens: int) -> AbstractContextManager:
    """The attention kernel for sequences of ``tokens`` on ``device``: when training on the CPU with
    at most ``MATH_ATTENTION_MAX_TOKENS``, the plain (math) one, whose backward beats the flash
    kernel's there (2-core Xeon, bf16, batch 16, two mesh-regressor layers: at 98 nodes 69 against
    126 ms a step, at 195 83 against 94, at 389 153 against 96; the text side's prompts 28 against 36
    ms on an EPYC); otherwise torch's own choice (without gradients flash is faster at every length)."""
    if device.type == "cpu" and tokens <= MATH_ATTENTION_MAX_TOKENS and torch.is_grad_enabled():
        return sdpa_kernel(SDPBackend.MATH)
    return nullcontext()
