"""Prompt encoder: an open_clip text tower followed by one token adapter per axis.

The tower (OpenAI CLIP ViT-B/32's, frozen, in the paper) turns a prompt into hidden states
[L, W]. Each axis has its own trainable adapter: a small causal transformer over the tokens of ONE
prompt, pooled at the end-of-text (EOT) token and projected to the pose/text embedding space. The
released code instead runs its adapter over a [B, 512] batch of pooled CLIP embeddings as if the
batch were a sequence, so a prompt's embedding depends on the other prompts in the batch; here no
operation mixes samples.

A frozen tower's hidden states depend on the prompt string alone, so they are kept in a bounded
LRU cache (on the CPU, fp16 by default), trimmed to the tokens up to the EOT token: with causal
attention and EOT pooling the padding after it never reaches the output. An entry of a 21-name
ViT-B/32 prompt is 76 x 512 fp16 values, 78 KB (4096 entries about 320 MB); the small tower's, 19 KB.
Measured on 2 CPU cores, ViT-B/32-size tower, 64 default-template prompts: 2.0 s without the cache
(and on a cold one), 0.25 s with a warm one (what remains is the two adapter layers). The cache
pays only where it holds the prompts that recur: one epoch of a data set with N distinct poses
brings 3N distinct prompts, and an LRU smaller than that rarely hits across epochs.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.factory import load_state_dict as read_open_clip_checkpoint
from open_clip.model import CLIPTextCfg, _build_text_tower
from open_clip.transformer import TextTransformer, Transformer
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from cliphand.config import TextConfig
from cliphand.devices import attention_kernel
from cliphand.text.prompts import AXES, AxisPrompts, token_count

logger = logging.getLogger(__name__)

SMALL = "small"  # model.text.model: the random-init tower sized by width/layers/heads

# Entries of a full CLIP checkpoint that belong to the rest of the model, not to the text tower
# (the last three are scalars in OpenAI's TorchScript release).
_NON_TEXT_KEYS = frozenset(
    {"logit_scale", "logit_bias", "input_resolution", "context_length", "vocab_size"}
)


def build_text_tower(cfg: TextConfig) -> TextTransformer:
    """The open_clip text tower named by ``cfg.model``, randomly initialised."""
    if cfg.model == SMALL:
        text_cfg = CLIPTextCfg(
            context_length=cfg.context_length, width=cfg.width, heads=cfg.heads, layers=cfg.layers,
        )
        out_dim, quick_gelu = cfg.embed_dim, cfg.quick_gelu
    else:
        model_cfg = open_clip.get_model_config(cfg.model)
        if model_cfg is None:
            raise ValueError(f"unknown open_clip model {cfg.model!r}; known: {open_clip.list_models()}")
        text_cfg = CLIPTextCfg(**model_cfg["text_cfg"])
        out_dim = model_cfg["embed_dim"]
        tag_cfg = open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained) if cfg.pretrained else {}
        quick_gelu = cfg.quick_gelu or bool(model_cfg.get("quick_gelu") or tag_cfg.get("quick_gelu"))
    # EOT pooling, trimming and caching rely on a causal tower without a class token.
    causal_eot = not (text_cfg.hf_model_name or text_cfg.embed_cls or text_cfg.no_causal_mask)
    if not causal_eot or text_cfg.pool_type != "argmax":
        raise ValueError(f"{cfg.model!r}: only causal CLIP-style towers pooled at EOT are supported")
    return _build_text_tower(out_dim, text_cfg, quick_gelu=quick_gelu)


def tower_states(tower: TextTransformer, tokens: Tensor) -> Tensor:
    """The tower's final hidden states (after ``ln_final``), before pooling and projection.

    tokens: [B, L], L <= context length; the causal mask makes position i independent of the
    tokens after it, so the batch may be cut after its longest prompt's EOT token.
    """
    n = tokens.shape[1]
    x = tower.token_embedding(tokens) + tower.positional_embedding[:n]  # [B, L, W]
    x = tower.transformer(x, attn_mask=tower.attn_mask[:n, :n])
    return tower.ln_final(x)


class TokenAdapter(nn.Module):
    """A causal transformer over one prompt's tokens, pooled at EOT and projected; L2-normalised."""

    def __init__(self, width: int, out_dim: int, layers: int, heads: int, context_length: int):
        super().__init__()
        self.transformer = Transformer(width=width, layers=layers, heads=heads)
        self.ln = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, out_dim) * width**-0.5)
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, states: Tensor, eot: Tensor) -> Tensor:
        """states [B, L, W], eot [B] (EOT positions) -> [B, out_dim]."""
        n = states.shape[1]
        x = self.transformer(states, attn_mask=self.attn_mask[:n, :n])  # [B, L, W]
        pooled = self.ln(x[torch.arange(x.shape[0], device=x.device), eot])  # [B, W]
        return F.normalize(pooled @ self.proj, dim=-1)


class LRUCache:
    """A bounded least-recently-used map from prompt to tensor, with hit/miss counts."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[str, Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Tensor | None:
        """The value for ``key`` (now most recent), or None; counts a hit or a miss."""
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return value

    def put(self, key: str, value: Tensor) -> None:
        """Store ``value``, evicting the least recently used entries beyond ``maxsize``."""
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry and reset the counts."""
        self._data.clear()
        self.hits = self.misses = 0


def resolve_checkpoint(model: str, pretrained: str) -> Path:
    """The local file for ``pretrained``: an open_clip tag of ``model`` (downloaded) or a path."""
    if open_clip.is_pretrained_cfg(model, pretrained):
        try:
            path = open_clip.download_pretrained(open_clip.get_pretrained_cfg(model, pretrained))
        except Exception as err:  # URLError, timeouts, hub errors: all mean "not available here"
            raise RuntimeError(
                f"could not fetch open_clip weights {model}/{pretrained} ({err!r}); without internet "
                f"access pass the path of a local checkpoint file as `pretrained` "
                f"(e.g. OpenAI's ViT-B-32.pt or an open_clip state dict)"
            ) from err
        return Path(path)
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"text checkpoint not found: {path} ({pretrained!r} is not an open_clip tag of {model!r} either)"
        )
    return path


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A checkpoint's state dict: OpenAI's TorchScript release, or a (possibly wrapped) state dict."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            is_torchscript = any(name.endswith("/constants.pkl") for name in archive.namelist())
        if is_torchscript:
            # OpenAI publishes CLIP as TorchScript only; torch.jit.load's deprecation notice is noise here.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(path, map_location="cpu").state_dict()
    # Unwraps {"state_dict": ...} and a DistributedDataParallel "module." prefix; weights only.
    return read_open_clip_checkpoint(str(path))


def text_state_dict(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """The text tower's entries of a CLIP or text-tower state dict, and the non-text keys dropped.

    Accepts open_clip's CLIP (and OpenAI's) layout, where the tower's keys sit at the top level
    beside ``visual.*``; its CustomTextCLIP layout (``text.*``); and a bare tower state dict.
    """
    if any(key.startswith("text.") for key in state_dict):
        state_dict = {key.removeprefix("text."): value for key, value in state_dict.items()}
    text, dropped = {}, []
    for key, value in state_dict.items():
        if key.startswith("visual.") or key in _NON_TEXT_KEYS:
            dropped.append(key)
        else:
            text[key] = value
    return text, dropped


def load_text_weights(tower: TextTransformer, path: Path) -> None:
    """Load a checkpoint into ``tower``; any missing or unexpected text key is an error."""
    text, dropped = text_state_dict(read_state_dict(path))
    expected = set(tower.state_dict())
    missing, unexpected = sorted(expected - text.keys()), sorted(text.keys() - expected)
    if missing or unexpected:
        raise RuntimeError(
            f"text checkpoint {path} does not match the text tower: "
            f"missing keys {missing}, unexpected keys {unexpected}"
        )
    tower.load_state_dict(text, strict=True)
    logger.info("loaded %d text-tower tensors from %s (%d non-text keys ignored)",
                len(text), path, len(dropped))


class TextEncoder(nn.Module):
    """Prompts of one axis -> L2-normalised embeddings [B, embed_dim]; samples never interact."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.cfg = cfg
        checkpoint = None if cfg.pretrained is None else resolve_checkpoint(cfg.model, cfg.pretrained)
        self.tower = build_text_tower(cfg)
        if checkpoint is not None:
            load_text_weights(self.tower, checkpoint)
        if cfg.frozen:
            self.tower.requires_grad_(False)
        # Unused: each adapter projects on its own. Kept so that CLIP checkpoints load strictly.
        if self.tower.text_projection is not None:
            self.tower.text_projection.requires_grad_(False)
        tokenizer_name = "ViT-B-32" if cfg.model == SMALL else cfg.model
        self.tokenizer = open_clip.get_tokenizer(tokenizer_name, context_length=cfg.context_length)
        self.adapters = nn.ModuleList(
            TokenAdapter(
                width=self.tower.width, out_dim=cfg.embed_dim, layers=cfg.adapter_layers,
                heads=cfg.adapter_heads, context_length=cfg.context_length,
            )
            for _ in AXES
        )
        # A trainable tower's states change every step: nothing to cache.
        self.cache = LRUCache(cfg.cache_size) if cfg.frozen and cfg.cache_size > 0 else None
        # New weights make cached states stale.
        self.register_load_state_dict_pre_hook(lambda module, *args: module.clear_cache())
        n_tower = sum(p.numel() for p in self.tower.parameters())
        n_adapters = sum(p.numel() for p in self.adapters.parameters())
        logger.info(
            "text tower %s (%s): %.1fM params, %s; adapters: 3 x %d layers, %.2fM params, trainable; "
            "cache: %s", cfg.model, cfg.pretrained or "random init", n_tower / 1e6,
            "frozen" if cfg.frozen else "trainable", cfg.adapter_layers, n_adapters / 1e6,
            f"{cfg.cache_size} entries" if self.cache is not None else "off",
        )

    @property
    def device(self) -> torch.device:
        """Where the tower's weights are; tokens and cached states go there."""
        return self.tower.positional_embedding.device

    def tokenize(self, prompts: Sequence[str]) -> Tensor:
        """CLIP tokens [B, context_length]; raises ValueError if a prompt would be truncated."""
        tokens = self.tokenizer(list(prompts))  # [B, 77]
        limit = tokens.shape[1]
        for i in torch.nonzero(tokens.argmax(dim=-1) == limit - 1).flatten().tolist():
            count = token_count(prompts[i], self.tokenizer)
            if count > limit:
                raise ValueError(f"prompt of {count} tokens exceeds the {limit}-token context: "
                                 f"{prompts[i]!r}")
        return tokens

    def forward(self, prompts: Sequence[str], axis: int) -> Tensor:
        """Embeddings [B, embed_dim] of one axis' prompts (axis 0 = x, 1 = y, 2 = z)."""
        if axis not in range(len(AXES)):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
        prompts = list(prompts)
        tokens = self.tokenize(prompts)  # [B, 77]
        eot = tokens.argmax(dim=-1)  # [B]; CLIP's EOT has the highest id
        with attention_kernel(self.device, tokens.shape[1]):
            states = self._states(prompts, tokens, eot)  # [B, L, W]
            return self.adapters[axis](states, eot.to(states.device))

    def encode_axes(self, prompts: Sequence[AxisPrompts]) -> Tensor:
        """Embeddings [B, 3, embed_dim] of every sample's three axis prompts."""
        return torch.stack([self([p[axis] for p in prompts], axis) for axis in range(len(AXES))], dim=1)

    def _states(self, prompts: list[str], tokens: Tensor, eot: Tensor) -> Tensor:
        """Tower hidden states [B, L, W], L = the longest prompt's length."""
        if self.cache is None:
            n = int(eot.max()) + 1
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.cfg.frozen):
                return tower_states(self.tower, tokens[:, :n].to(self.device))
        found: dict[str, Tensor] = {}
        first: dict[str, int] = {}
        for i, prompt in enumerate(prompts):
            if prompt not in found and prompt not in first:
                hit = self.cache.get(prompt)
                if hit is None:
                    first[prompt] = i
                else:
                    found[prompt] = hit
        if first:
            rows = list(first.values())
            n = int(eot[rows].max()) + 1
            with torch.no_grad():
                fresh = tower_states(self.tower, tokens[rows, :n].to(self.device))  # [M, n, W]
            dtype = torch.float16 if self.cfg.cache_fp16 else fresh.dtype
            for prompt, row, states in zip(first, rows, fresh):
                # Misses go through the same rounding as hits: a prompt's output never depends on
                # whether it was cached.
                found[prompt] = states[: int(eot[row]) + 1].to("cpu", dtype)  # [len, W]
                self.cache.put(prompt, found[prompt])
        padded = pad_sequence([found[p] for p in prompts], batch_first=True)  # [B, L, W]
        return padded.to(self.device, self.tower.positional_embedding.dtype)

    def clear_cache(self) -> None:
        """Forget every cached tower output (after the tower's weights change)."""
        if self.cache is not None:
            self.cache.clear()

    def cache_info(self) -> dict[str, int]:
        """Hits and misses (per unique prompt of a batch), current size and capacity."""
        if self.cache is None:
            return {"hits": 0, "misses": 0, "size": 0, "maxsize": 0}
        cache = self.cache
        return {"hits": cache.hits, "misses": cache.misses, "size": len(cache), "maxsize": cache.maxsize}

    def save_tower(self, path: str | Path) -> None:
        """Write the tower's weights as {"model", "state_dict"}; ``pretrained=path`` loads them."""
        torch.save({"model": self.cfg.model, "state_dict": self.tower.state_dict()}, path)
