"""The inference-only model: images in, 2.5D joints and vertices out (for MLflow, exports and speed).

``InferenceModel`` is the one-tensor-in, one-tensor-out form; ``speed_up`` puts any image module on
the fast path that ``cliphand.benchmark`` measured; ``export_model`` writes it as TorchScript or as
a ``torch.export`` program.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from cliphand.config import Speedups
from cliphand.devices import usable_speedups
from cliphand.models.cliphand3d import CLIPHand3D

FORMATS = ("torchscript", "torch.export")


class InferenceModel(nn.Module):
    """``[B, 3, S, S]`` images in [0, 1] → ``[B, 21 + 778, 3]`` 2.5D joints then vertices.

    One tensor in and one out, so serving tools (MLflow's pyfunc, TorchScript, ONNX) take it as
    is. ``cliphand.codec.Codec25D.lift`` turns the output into camera space given ``K`` and the
    hand's scale; ``.model`` is the full ``CLIPHand3D`` for callers that have them.
    """

    def __init__(self, model: CLIPHand3D) -> None:
        super().__init__()
        model = copy.deepcopy(model).cpu().eval()
        model.text, model.logit_scales = None, None  # inference never reads prompts
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        out = self.model(images)
        return torch.cat([out.joints25d, out.verts25d[-1]], dim=1)


def speed_up(module: nn.Module, device: torch.device, speedups: Speedups) -> Callable[[Tensor], Tensor]:
    """``module`` (images ``[B, 3, S, S]`` → tensors) as a fast inference function on ``device``.

    The module is put in eval mode, moved and converted in place (NHWC, bfloat16 conv and linear
    weights); pass a copy to keep the original. bf16 is left off where ``device`` has no native bf16 kernels.
    """
    speedups = usable_speedups(speedups, device)
    module = module.eval().to(device)
    layout = torch.channels_last if speedups.channels_last else torch.contiguous_format
    module = module.to(memory_format=layout)
    if speedups.bf16:
        # Autocast casts every conv and linear weight to bfloat16 on every call; cast them once.
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                layer.to(torch.bfloat16)
    net = torch.compile(module) if speedups.compile else module

    def run(images: Tensor) -> Tensor:
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=speedups.bf16):
            out = net(images.to(device, memory_format=layout))
        return [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()

    return run


def export_model(model: CLIPHand3D, path: Path | str, fmt: str = "torchscript", example_batch: int = 2) -> Path:
    """Write the inference model of ``model`` to ``path``, for any batch size; returns the path.

    ``torchscript``: ``torch.jit.trace`` (loads with ``torch.jit.load``, also from C++);
    ``torch.export``: an ``ExportedProgram`` with a dynamic batch dimension (``torch.export.load``).
    Both are float32 and NCHW: the numbers an eager model gives, within float tolerance.
    """
    if fmt not in FORMATS:
        raise ValueError(f"export format: one of {FORMATS}, got {fmt!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = InferenceModel(model)
    size = model.cfg.image_size
    example = torch.rand(example_batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    # Written next to the target, then renamed: a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if fmt == "torchscript":
            with torch.no_grad(), warnings.catch_warnings():
                # torch.jit is deprecated in favour of torch.export; TorchScript still serves libtorch.
                warnings.simplefilter("ignore", FutureWarning)
                # Attention's shape checks read fixed sizes only; the batch size stays free (tested).
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                torch.jit.trace(net, example).save(str(tmp))
        else:
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.export.export(net, (example,), dynamic_shapes={"images": {0: batch}})
            torch.export.save(program, str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_exported(path: Path | str, fmt: str = "torchscript") -> Callable[[Tensor], Tensor]:
    """A file written by ``export_model`` as a function of images ``[B, 3, S, S]``."""
    if fmt not in FORMATS:
        raise ValueError(f"export format: one of {FORMATS}, got {fmt!r}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such exported model")
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    return torch.export.load(str(path)).module()
