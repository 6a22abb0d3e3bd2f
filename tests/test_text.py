"""Prompts (orders, token budget) and the text encoder (batch independence, cache, weight loading)."""

from __future__ import annotations

import urllib.error
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from torch import Tensor, nn

from cliphand.config import TextConfig, read_params
from cliphand.skeleton import JOINT_NAMES, NUM_JOINTS
from cliphand.text import encoder as encoder_module
from cliphand.text.encoder import (
    LRUCache,
    TextEncoder,
    build_text_tower,
    tower_states,
)
from cliphand.text.prompts import (
    DEFAULT_TEMPLATE,
    TEMPLATES,
    check_fits,
    join_names,
    joint_orders,
    longest_prompt,
    make_prompts,
)

# Worst-case token counts as documented in cliphand/text/prompts.py.
DOCUMENTED_COUNTS = {"hand_joints": 76, "authors": 72, "terse": 73}


@pytest.fixture(scope="module")
def tokenizer() -> open_clip.SimpleTokenizer:
    return open_clip.get_tokenizer("ViT-B-32")


def tiny_config(**overrides) -> TextConfig:
    """The small preset shrunk further: fast enough for many forward passes on a 2-core CPU."""
    return replace(TextConfig(width=64, layers=2, heads=2, embed_dim=32, adapter_heads=2), **overrides)


def paper_text() -> TextConfig:
    """The paper preset's text side (OpenAI CLIP ViT-B/32, frozen), as presets/paper.yaml sets it."""
    root = Path(__file__).resolve().parents[1]
    return read_params(root / "params.yaml", "paper", root / "presets")[0].model.text


def random_hands(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, NUM_JOINTS, 3))


def axis_prompts(n: int, seed: int, axis: int = 0, k: int | None = None) -> list[str]:
    rng = np.random.default_rng(seed)
    return [p[axis] for p in make_prompts(random_hands(n, seed), k=k, rng=rng)]


# --- prompt length ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_longest_prompt_of_every_template_fits(name: str, tokenizer) -> None:
    count, text = longest_prompt(name, tokenizer)
    tokens = tokenizer([text])[0]  # [77], ftfy-cleaned by open_clip's tokenizer
    body = tokenizer.encode(text)
    # Untruncated: the end token follows the whole prompt, inside the context.
    assert count == len(body) + 2 <= tokenizer.context_length
    assert tokens[count - 1] == tokenizer.eot_token_id
    assert tokens[1 : count - 1].tolist() == body
    assert check_fits(name, tokenizer) == count == DOCUMENTED_COUNTS[name]
    print(f"{name}: worst case {count} of {tokenizer.context_length} tokens")


def test_default_template_is_documented(tokenizer) -> None:
    assert DEFAULT_TEMPLATE == "hand_joints"
    print(f"default template {DEFAULT_TEMPLATE!r}: {check_fits(DEFAULT_TEMPLATE, tokenizer)} tokens")


def test_worst_case_covers_every_last_name_and_axis(tokenizer) -> None:
    fmt = TEMPLATES[DEFAULT_TEMPLATE]
    counts = [
        len(tokenizer.encode(f.format(joints=join_names(np.roll(JOINT_NAMES, -last).tolist())))) + 2
        for f in fmt
        for last in range(NUM_JOINTS)
    ]
    assert max(counts) == longest_prompt(DEFAULT_TEMPLATE, tokenizer)[0]


def test_too_long_template_is_rejected(tokenizer) -> None:
    directions = ("left to right", "top to bottom", "near to far")
    papers = tuple(f"From {d}, the joints are: {{joints}}." for d in directions)  # the paper's wording
    with pytest.raises(ValueError, match="cut the tail"):
        check_fits(papers, tokenizer)


def test_encoder_refuses_truncated_prompt() -> None:
    encoder = TextEncoder(tiny_config())
    fits = "x " * 75  # 75 words + start + end = 77 tokens exactly
    assert encoder.tokenize([fits]).shape == (1, 77)
    with pytest.raises(ValueError, match="exceeds"):
        encoder.tokenize([fits + "x"])


# --- orders -------------------------------------------------------------------------------------


def test_orders_of_a_known_hand() -> None:
    j = np.arange(NUM_JOINTS, dtype=float)
    xyz = np.stack([20 - j, j, np.zeros(NUM_JOINTS)], axis=-1)  # x reversed, y increasing, z tied
    orders = joint_orders(xyz)
    assert orders.shape == (3, NUM_JOINTS)
    np.testing.assert_array_equal(orders[0], j[::-1])
    np.testing.assert_array_equal(orders[1], j)
    np.testing.assert_array_equal(orders[2], j)  # all tied: joint-index order


def test_ties_sort_by_joint_index() -> None:
    xyz = np.zeros((NUM_JOINTS, 3))
    xyz[:, 0] = [1, 0, 1, 0, 2, 0, 1, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    ones = [0, 2, 6, 9]
    twos = [4, 8]
    zeros = [i for i in range(NUM_JOINTS) if i not in ones + twos]
    np.testing.assert_array_equal(joint_orders(xyz)[0], zeros + ones + twos)


def test_orders_broadcast_over_batch_dims() -> None:
    xyz = random_hands(8, 0).reshape(2, 4, NUM_JOINTS, 3)
    orders = joint_orders(xyz)
    assert orders.shape == (2, 4, 3, NUM_JOINTS)
    np.testing.assert_array_equal(orders[1, 2], joint_orders(xyz[1, 2]))


def test_axes_read_left_right_top_bottom_near_far() -> None:
    # Camera space: x right, y down, z forward.
    xyz = np.repeat(np.arange(NUM_JOINTS)[:, None] * 1e-3 + 0.1, 3, axis=1)  # every axis in index order
    xyz[8, 0] = -0.5  # index tip: far left
    xyz[4, 1] = -0.5  # thumb tip: highest up in the image
    xyz[20, 2] = -0.5  # little tip: closest to the camera
    x, y, z = make_prompts(xyz)[0]
    assert x == TEMPLATES[DEFAULT_TEMPLATE][0].format(
        joints=join_names([JOINT_NAMES[8]] + [n for i, n in enumerate(JOINT_NAMES) if i != 8])
    )
    assert x.startswith("Hand joints from left to right: index tip, wrist,")
    assert y.startswith("Hand joints from top to bottom: thumb tip, wrist,")
    assert z.startswith("Hand joints from near to far: little tip, wrist,")
    assert x.endswith("little DIP and little tip.") and z.endswith("little PIP and little DIP.")


def test_k_subset_is_seeded_shared_and_sorted() -> None:
    xyz = random_hands(6, 1)
    a = make_prompts(xyz, k=5, rng=np.random.default_rng(7))
    b = make_prompts(xyz, k=5, rng=np.random.default_rng(7))
    c = make_prompts(xyz, k=5, rng=np.random.default_rng(8))
    assert a == b and a != c
    fmt = TEMPLATES[DEFAULT_TEMPLATE]
    for sample, prompts in zip(xyz, a):
        chosen = []
        for axis, text in enumerate(prompts):
            body = text.removeprefix(fmt[axis].split("{")[0]).removesuffix(".")
            head, last = body.rsplit(" and ", 1)
            names = head.split(", ") + [last]
            assert len(names) == 5
            idx = [JOINT_NAMES.index(n) for n in names]
            assert np.all(np.diff(sample[idx, axis]) >= 0)  # listed in their order along the axis
            chosen.append(sorted(idx))
        assert chosen[0] == chosen[1] == chosen[2]  # one subset per sample, for all three axes


def test_k_subset_needs_an_rng() -> None:
    with pytest.raises(ValueError, match="rng"):
        make_prompts(random_hands(1, 0), k=5)


def test_authors_template_keeps_its_wording() -> None:
    prompt = make_prompts(random_hands(1, 0), template="authors")[0]
    assert all(p.startswith("Order are: ") for p in prompt)


# --- batch independence -------------------------------------------------------------------------


def batch_dependence(encode: Callable[[Sequence[str]], Tensor], target: str, seed: int) -> float:
    """How far ``target``'s embedding moves when it shares a batch (sizes 4 and 16, new companions)."""
    alone = encode([target])[0]
    worst = 0.0
    for size, companion_seed in ((4, seed + 1), (16, seed + 2), (16, seed + 3)):
        companions = axis_prompts(size - 1, companion_seed, k=None if companion_seed % 2 else 6)
        position = companion_seed % size
        batch = companions[:position] + [target] + companions[position:]
        worst = max(worst, (encode(batch)[position] - alone).abs().max().item())
    return worst


class BatchAttendingAdapter(nn.Module):
    """The released adapter's defect: a transformer over the [B, W] batch of pooled embeddings."""

    def __init__(self, encoder: TextEncoder):
        super().__init__()
        self.encoder = encoder
        width = encoder.tower.width
        layer = nn.TransformerEncoderLayer(width, nhead=2, dim_feedforward=2 * width, batch_first=True)
        self.mix = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

    def forward(self, prompts: Sequence[str]) -> Tensor:
        tokens = self.encoder.tokenize(prompts)
        eot = tokens.argmax(-1)
        states = tower_states(self.encoder.tower, tokens)  # [B, 77, W]
        pooled = states[torch.arange(len(prompts)), eot]  # [B, W]
        return self.mix(pooled[None])[0]  # the batch taken as one sequence


@pytest.mark.parametrize("frozen", [False, True])
@torch.no_grad()
def test_embedding_does_not_depend_on_the_batch(frozen: bool) -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(tiny_config(frozen=frozen)).eval()
    for axis, target in enumerate(axis_prompts(3, 10)):
        assert batch_dependence(lambda p: encoder(p, axis), target, seed=axis) < 1e-5


@torch.no_grad()
def test_batch_dependence_check_catches_a_batch_attending_adapter() -> None:
    torch.manual_seed(0)
    leaky = BatchAttendingAdapter(TextEncoder(tiny_config())).eval()
    assert batch_dependence(leaky, axis_prompts(1, 10)[0], seed=0) > 1e-3


@torch.no_grad()
def test_trimmed_hidden_states_match_the_towers_own_forward() -> None:
    encoder = TextEncoder(tiny_config()).eval()
    prompts = axis_prompts(3, 4) + axis_prompts(2, 5, k=3)
    tokens = encoder.tokenize(prompts)
    eot = tokens.argmax(-1)
    states = tower_states(encoder.tower, tokens[:, : int(eot.max()) + 1])
    pooled = states[torch.arange(len(prompts)), eot] @ encoder.tower.text_projection
    torch.testing.assert_close(pooled, encoder.tower(tokens), atol=1e-5, rtol=0)


# --- cache --------------------------------------------------------------------------------------


def test_lru_cache_is_bounded_and_evicts_least_recent() -> None:
    cache = LRUCache(3)
    for i in range(5):
        cache.put(str(i), torch.tensor(i))
    assert len(cache) == 3 and cache.get("0") is None and cache.get("1") is None
    assert cache.get("2") is not None  # "2" is now the most recent
    cache.put("5", torch.tensor(5))
    assert cache.get("3") is None and cache.get("2") is not None
    assert (cache.hits, cache.misses) == (2, 3)


@torch.no_grad()
def test_cache_hits_and_matches_uncached_outputs() -> None:
    torch.manual_seed(0)
    cached = TextEncoder(tiny_config(frozen=True, cache_size=64, cache_fp16=False)).eval()
    plain = TextEncoder(tiny_config(frozen=True, cache_size=0)).eval()
    plain.load_state_dict(cached.state_dict())
    prompts = axis_prompts(6, 3)
    batch = prompts + prompts[:2]  # repeats inside a batch are looked up once
    first = cached(batch, 1)
    assert cached.cache_info() == {"hits": 0, "misses": 6, "size": 6, "maxsize": 64}
    second = cached(batch, 1)
    assert cached.cache_info()["hits"] == 6
    assert torch.equal(first, second)
    torch.testing.assert_close(first, plain(batch, 1), atol=1e-6, rtol=0)


@torch.no_grad()
def test_fp16_cache_is_close_to_uncached() -> None:
    torch.manual_seed(0)
    cached = TextEncoder(tiny_config(frozen=True, cache_size=64)).eval()
    plain = TextEncoder(tiny_config(frozen=True, cache_size=0)).eval()
    plain.load_state_dict(cached.state_dict())
    prompts = axis_prompts(4, 3)
    cached(prompts, 2)  # warm
    torch.testing.assert_close(cached(prompts, 2), plain(prompts, 2), atol=5e-3, rtol=0)


@torch.no_grad()
def test_cache_stays_bounded_and_is_cleared_by_new_weights() -> None:
    encoder = TextEncoder(tiny_config(frozen=True, cache_size=5)).eval()
    encoder(axis_prompts(12, 6), 0)  # more unique prompts than entries, in one batch
    assert encoder.cache_info()["size"] == 5
    encoder.load_state_dict(encoder.state_dict())
    assert encoder.cache_info()["size"] == 0


@torch.no_grad()
def test_encode_axes_stacks_the_three_axes() -> None:
    encoder = TextEncoder(tiny_config()).eval()
    prompts = make_prompts(random_hands(3, 0))
    out = encoder.encode_axes(prompts)  # [B, 3, E]
    assert out.shape == (3, 3, 32)
    torch.testing.assert_close(out[:, 2], encoder([p.z for p in prompts], 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3, 3))


def test_trainable_tower_has_no_cache() -> None:
    assert TextEncoder(tiny_config(frozen=False, cache_size=64)).cache is None


# --- weights, freezing, gradients ---------------------------------------------------------------


def full_clip_state_dict(encoder: TextEncoder) -> dict[str, Tensor]:
    """The tower's keys at the top level, as in open_clip's CLIP and OpenAI's release, plus others."""
    state = dict(encoder.tower.state_dict())
    state["visual.conv1.weight"] = torch.randn(8, 3, 4, 4)
    state["visual.proj"] = torch.randn(8, 32)
    state["logit_scale"] = torch.tensor(4.6)
    return state


@torch.no_grad()
def assert_same_outputs(a: TextEncoder, b: TextEncoder) -> None:
    b.adapters.load_state_dict(a.adapters.state_dict())
    prompts = axis_prompts(3, 9)
    for axis in range(3):
        torch.testing.assert_close(a.eval()(prompts, axis), b.eval()(prompts, axis), atol=0, rtol=0)


def test_full_clip_checkpoint_round_trip(tmp_path: Path) -> None:
    source = TextEncoder(tiny_config())
    state = full_clip_state_dict(source)
    for prefix in ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection"):
        assert any(key.startswith(prefix) for key in state)
    for name, payload in (("clip.pt", state), ("wrapped.pt", {"state_dict": state, "epoch": 3})):
        torch.save(payload, tmp_path / name)
        assert_same_outputs(source, TextEncoder(tiny_config(pretrained=str(tmp_path / name))))


def test_own_tower_checkpoint_round_trip(tmp_path: Path) -> None:
    source = TextEncoder(tiny_config())
    source.save_tower(tmp_path / "tower.pt")
    assert_same_outputs(source, TextEncoder(tiny_config(pretrained=str(tmp_path / "tower.pt"))))


def test_torchscript_release_loads(tmp_path: Path) -> None:
    """OpenAI ships CLIP as a TorchScript archive with a few scalar entries beside the weights."""
    source = TextEncoder(tiny_config())

    class OpenAILike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name in ("transformer", "token_embedding", "positional_embedding", "ln_final"):
                setattr(self, name, getattr(source.tower, name))
            self.text_projection = source.tower.text_projection
            self.visual = nn.Linear(3, 3)
            self.logit_scale = nn.Parameter(torch.tensor(4.6))
            for name, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
                self.register_buffer(name, torch.tensor(value))

        def forward(self, x: Tensor) -> Tensor:
            return self.visual(x)

    with warnings.catch_warnings():  # torch.jit.trace is deprecated; OpenAI's file predates that
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(OpenAILike(), torch.zeros(1, 3)).save(str(tmp_path / "ViT-B-32.pt"))
    assert_same_outputs(source, TextEncoder(tiny_config(pretrained=str(tmp_path / "ViT-B-32.pt"))))


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_partial_checkpoint_is_an_error_naming_the_key(tmp_path: Path, change: str) -> None:
    state = full_clip_state_dict(TextEncoder(tiny_config()))
    if change == "missing":
        key = "ln_final.bias"
        del state[key]
    else:
        key = "transformer.resblocks.7.attn.in_proj_weight"
        state[key] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pt")
    kind = "missing" if change == "missing" else "unexpected"
    with pytest.raises(RuntimeError, match=f"{kind} keys.*{key}"):
        TextEncoder(tiny_config(pretrained=str(tmp_path / "bad.pt")))


def test_missing_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "clip.pt"
    with pytest.raises(FileNotFoundError, match=str(path)):
        TextEncoder(tiny_config(pretrained=str(path)))


def test_openai_offline_asks_for_a_local_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(encoder_module.open_clip, "download_pretrained", offline)
    with pytest.raises(RuntimeError, match="local checkpoint"):
        TextEncoder(paper_text())


def test_vit_b_32_preset_builds_the_openai_architecture() -> None:
    cfg = paper_text()
    assert (cfg.pretrained, cfg.frozen, cfg.embed_dim, cfg.adapter_layers) == ("openai", True, 512, 2)
    tower = build_text_tower(replace(cfg, pretrained=None))  # built, not run: no weights offline
    assert (tower.width, len(tower.transformer.resblocks), tower.heads) == (512, 12, 8)
    assert tower.text_projection.shape == (512, 512)
    assert type(tower.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"  # OpenAI's activation


def test_frozen_tower_trains_only_the_adapters() -> None:
    encoder = TextEncoder(tiny_config(frozen=True, cache_size=8))
    assert not any(p.requires_grad for p in encoder.tower.parameters())
    assert all(p.requires_grad for p in encoder.adapters.parameters())
    encoder(axis_prompts(4, 2, axis=1), 1).sum().backward()
    grads = [p.grad for p in encoder.adapters[1].parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in encoder.adapters[0].parameters())  # another axis' adapter
    assert all(p.grad is None for p in encoder.tower.parameters())


def test_the_default_text_side_trains_its_adapters_over_a_fixed_cached_tower() -> None:
    """params.yaml's text side (shrunk): the tower keeps its initial weights, and its states for a
    prompt are computed once; the adapters take the gradient (docs/recipe.md: "The text tower frozen")."""
    root = Path(__file__).resolve().parents[1]
    default = read_params(root / "params.yaml")[0].model.text
    encoder = TextEncoder(replace(default, width=64, layers=1, heads=2, embed_dim=32, adapter_layers=1))
    prompts = axis_prompts(4, 2)
    encoder(prompts, 0).sum().backward()
    assert all(p.grad is None for p in encoder.tower.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.adapters[0].parameters())
    encoder(prompts, 0)
    assert encoder.cache_info()["hits"] == len(set(prompts))


def test_trainable_tower_receives_gradients() -> None:
    encoder = TextEncoder(tiny_config(frozen=False))
    encoder(axis_prompts(4, 2), 0).sum().backward()
    assert encoder.tower.token_embedding.weight.grad.abs().sum() > 0
    assert encoder.tower.transformer.resblocks[0].attn.in_proj_weight.grad.abs().sum() > 0
