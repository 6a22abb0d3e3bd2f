"""The model core: shapes, soft-argmax, config errors, presets, weight loading."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from safetensors import safe_open
from safetensors.torch import save_file

from cliphand.checkpoint import CheckpointError
from cliphand.config import (
    BackboneConfig,
    ConfigError,
    ModelConfig,
    from_dict,
    read_params,
)
from cliphand.models.backbone import Backbone
from cliphand.models.cliphand3d import CLIPHand3D, count_parameters
from cliphand.models.io import load_model, save_model
from cliphand.models.pose_head import heatmap_bins, soft_argmax


def test_soft_argmax_is_normalised_to_unit_interval():
    bins = 32
    onehot = torch.zeros(3, bins)
    onehot[0, 0], onehot[1, 31], onehot[2, 10] = 1, 1, 1
    expected = torch.tensor([0.5, 31.5, 10.5]) / bins
    assert torch.allclose(soft_argmax(onehot), expected)
    # A uniform heatmap points at the centre; two equal peaks at their midpoint.
    assert torch.allclose(soft_argmax(torch.full((bins,), 1 / bins)), torch.tensor(0.5))
    two = torch.zeros(bins)
    two[4] = two[12] = 0.5
    assert torch.allclose(soft_argmax(two), torch.tensor(8.5 / bins))


def test_heatmap_bins_follow_the_paper_at_256():
    assert heatmap_bins(256) == (32, 32, 64)
    assert heatmap_bins(128) == (16, 16, 32)


def test_forward_shapes_and_backward(hierarchy):
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), hierarchy)
    images = torch.rand(2, 3, 64, 64)
    K = torch.tensor([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]).expand(2, 3, 3)
    scale = torch.full((2,), 0.03)
    out = model(images, K, scale)
    bx, by, bz = heatmap_bins(64)
    assert [h.shape for h in out.heatmaps] == [(2, 21, bx), (2, 21, by), (2, 21, bz)]
    assert torch.allclose(out.heatmaps[2].sum(-1), torch.ones(2, 21))
    assert out.joints25d.shape == (2, 21, 3) and ((0 <= out.joints25d) & (out.joints25d <= 1)).all()
    assert [v.shape[1] for v in out.verts25d] == [98, 195, 389, 778]
    assert out.joints_cam.shape == (2, 21, 3) and out.verts_cam.shape == (2, 778, 3)
    assert all(f.shape == (2, 64) for f in out.pose_feats)
    assert torch.allclose(out.pose_feats[0].norm(dim=-1), torch.ones(2))
    loss = out.verts25d[-1].sum() + out.joints25d.sum() + sum(f.sum() for f in out.pose_feats)
    loss.backward()
    assert model.backbone.body.conv1.weight.grad is not None
    assert model.mesh.levels[0].pos.weight.grad is not None
    assert not any("blend" in n for n, _ in model.mesh.named_parameters())  # fixed blends: buffers, not weights


def test_heatmaps_and_joints_stay_fp32_under_bf16_autocast(hierarchy):
    # bf16 keeps 8 bits of mantissa: a soft-argmax in it lands on a grid of ~1/256 of the image.
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), hierarchy).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, with_mesh=False)
    assert [l.dtype for l in out.logits] == [torch.float32] * 3
    assert out.joints25d.dtype == torch.float32
    with torch.no_grad():
        reference = model(images, with_mesh=False).joints25d
    # what is left is the bf16 convolutions' rounding, not a quantised position
    assert (out.joints25d - reference).abs().max() < 2e-3


def test_direct_regression_ablation_has_one_level(hierarchy):
    torch.manual_seed(0)
    mesh = dataclasses.replace(tiny_config().mesh, widths=(8,), levels=(778,))
    model = CLIPHand3D(tiny_config(mesh=mesh), hierarchy)
    out = model(torch.rand(2, 3, 64, 64))
    assert [v.shape for v in out.verts25d] == [(2, 778, 3)]
    assert model.hierarchy.sizes == (778,) and model.mesh.levels[0].blend().shape == (778, 21)
    out.verts25d[0].sum().backward()
    bad = dataclasses.replace(mesh, levels=(98, 389))
    with pytest.raises(ConfigError, match="model.mesh.levels"):
        CLIPHand3D(tiny_config(mesh=bad), hierarchy)


def test_sample_does_not_depend_on_its_batch(hierarchy):
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), hierarchy).eval()
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        alone = model(images[:1]).verts25d[-1]
        batched = model(images).verts25d[-1][:1]
    assert torch.allclose(alone, batched, atol=1e-5)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"model\.backbone\.nme"):
        from_dict(ModelConfig, {"backbone": {"nme": "resnet18"}}, "model")
    with pytest.raises(ConfigError, match=r"model\.image_size"):
        from_dict(ModelConfig, {"image_size": 100}, "model")
    with pytest.raises(ConfigError, match=r"model\.embed_dim"):
        from_dict(ModelConfig, {"embed_dim": "big"}, "model")
    with pytest.raises(ValueError, match=r"model\.backbone\.name.*resnet9000"):
        Backbone(BackboneConfig(name="resnet9000"))
    with pytest.raises(FileNotFoundError, match=r"model\.backbone\.pretrained.*nope\.pth"):
        Backbone(BackboneConfig(pretrained="/nope.pth"))


def test_any_timm_cnn_builds_a_pyramid():
    for name in ("resnet18", "mobilenetv3_small_100", "efficientnet_b0"):
        bb = Backbone(BackboneConfig(name=name))
        feats = bb(torch.rand(1, 3, 64, 64))
        assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
        assert [f.shape[1] for f in feats] == bb.channels


def test_backbone_loads_a_local_checkpoint_strictly(tmp_path):
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    bb = Backbone(BackboneConfig(name="resnet18", pretrained=str(path)))
    assert torch.equal(bb.body.conv1.weight, reference.conv1.weight)
    broken = reference.state_dict()
    del broken["layer1.0.conv1.weight"]
    torch.save(broken, path)
    with pytest.raises(RuntimeError, match=r"missing keys \(1\): layer1\.0\.conv1\.weight"):
        Backbone(BackboneConfig(name="resnet18", pretrained=str(path)))


def test_model_file_round_trip_and_strict_partial_load(hierarchy, tmp_path):
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), hierarchy).eval()
    path = tmp_path / "model.pt"
    save_model(model, path)
    again = load_model(path).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images).verts25d[-1], again(images).verts25d[-1])
    with safe_open(path, framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    del tensors["model.pose_head.heatmap2d.weight"]
    tensors["model.surplus.weight"] = torch.zeros(1)
    save_file(tensors, path, metadata=metadata)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): pose_head\.heatmap2d\.weight.*unexpected keys \(1\): surplus\.weight"):
        load_model(path)
    save_file(tensors, path, metadata={"cliphand": metadata["cliphand"].replace('"version": 1', '"version": 2')})
    with pytest.raises(CheckpointError, match=r"format 'cliphand-model' version 2; this cliphand reads 'cliphand-model' version 1"):
        load_model(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a cliphand model file"):
        load_model(path)


def test_paper_preset_builds_and_runs(hierarchy):
    root = Path(__file__).resolve().parents[1]
    params, _ = read_params(root / "params.yaml", "paper", root / "presets")
    model = CLIPHand3D(params.model.offline(), hierarchy)  # weights cannot be fetched offline
    counts = count_parameters(model)
    assert 23e6 < counts["backbone"] < 24.5e6  # ResNet-50 without its classifier
    assert 60e6 < counts["text"]  # CLIP ViT-B/32's text transformer and its adapters
    out = model(torch.rand(1, 3, 256, 256))
    assert [h.shape[-1] for h in out.heatmaps] == [32, 32, 64]
    out.verts25d[-1].sum().backward()


def test_default_preset_from_params_builds_and_trains_a_step(hierarchy):
    params, _ = read_params(Path(__file__).resolve().parents[1] / "params.yaml")
    model = CLIPHand3D(params.model, hierarchy)
    size = params.model.image_size
    out = model(torch.rand(2, 3, size, size))
    assert out.verts25d[-1].shape == (2, 778, 3)
    loss = out.joints25d.sum() + out.verts25d[-1].sum() + model.encode_text(["a", "b"], 0).sum()
    loss.backward()
    assert all(p.grad is not None for p in model.pose_head.parameters())
    counts = count_parameters(model)
    assert 4.5e6 < counts["backbone"] < 5.5e6  # timm's resnet10t without its classifier
    assert 14e6 < counts["total"] < 17e6


@pytest.mark.parametrize("per_step, step", [(1, 0), (1, 4), (2, 1), (3, 5)])
def test_the_contrastive_axes_of_a_step_take_turns(processed_hands, per_step, step):
    """``clip_axes_per_step`` axes (x, y, z in turn from ``step * per_step``) enter the loss, scaled by
    3 / per_step; the other axes' adapters get no gradient."""
    from torch.utils.data import default_collate

    from cliphand.config import LossWeights, TrainConfig
    from cliphand.data.dataset import HandDataset
    from cliphand.losses import clip_loss, prompt_ids
    from cliphand.models.hierarchy import MeshHierarchy
    from cliphand.training.trainer import compute_losses

    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), MeshHierarchy.load(processed_hands / "hierarchy.npz"))
    batch = default_collate([HandDataset(processed_hands, "train", 8.0)[i] for i in range(4)])
    cfg = TrainConfig(batch_size=4, amp="none", clip_axes_per_step=per_step, loss=LossWeights(clip=1.0))
    out = model(batch["image"], with_mesh=False)
    terms = compute_losses(model, out, batch, cfg, with_mesh=False, step=step)
    axes = sorted((step * per_step + i) % 3 for i in range(per_step))
    expected = sum(
        clip_loss(out.pose_feats[a], model.encode_text(list(batch["prompts"][a]), a), model.logit_scales[a](),
                  prompt_ids(list(batch["prompts"][a])))
        for a in axes
    ) * 3 / per_step
    torch.testing.assert_close(terms["clip"], expected)
    terms["clip"].backward()
    trained = [a for a, adapter in enumerate(model.text.adapters) if any(p.grad is not None for p in adapter.parameters())]
    assert trained == axes


def test_the_2d_heatmaps_are_what_the_x_and_y_heatmaps_marginalise(processed_hands):
    """``HandOutput.heatmap2d`` is one distribution per joint whose column and row sums are the x
    and y heatmaps, and the training step's ``heatmap2d`` term is its KL to the labels' product."""
    from torch.utils.data import default_collate

    from cliphand.config import LossWeights, TrainConfig
    from cliphand.data.dataset import HandDataset
    from cliphand.losses import heatmap2d_loss, heatmap_labels
    from cliphand.models.hierarchy import MeshHierarchy
    from cliphand.training.trainer import compute_losses

    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), MeshHierarchy.load(processed_hands / "hierarchy.npz"))
    batch = default_collate([HandDataset(processed_hands, "train", 8.0)[i] for i in range(4)])
    out = model(batch["image"], with_mesh=False)
    p2d = out.heatmap2d.exp()  # [B, 21, By, Bx]
    assert p2d.shape[-2:] == (out.heatmaps[1].shape[-1], out.heatmaps[0].shape[-1])
    torch.testing.assert_close(p2d.sum((2, 3)), torch.ones(4, 21))
    torch.testing.assert_close(p2d.sum(2), out.heatmaps[0])
    torch.testing.assert_close(p2d.sum(3), out.heatmaps[1])
    cfg = TrainConfig(batch_size=4, amp="none", loss=LossWeights(joints=0.0, heatmap=0.0, heatmap2d=2.0, clip=0.0,
                                                                 clip_labels=0.0))
    terms = compute_losses(model, out, batch, cfg, with_mesh=False)
    labels = heatmap_labels(batch["joints25d"], [h.shape[-1] for h in out.heatmaps], cfg.label_sigma)
    assert set(terms) == {"joints", "heatmap2d", "total"}
    torch.testing.assert_close(terms["heatmap2d"], 2.0 * heatmap2d_loss(out.heatmap2d, labels))


def test_the_heatmap_labels_are_as_wide_as_the_phases_label_sigma(processed_hands):
    """``<phase>.label_sigma`` is the labels' width in bins: the training step's heatmap terms are
    the KL to labels of that width, and a narrower label costs a broad heatmap more."""
    from torch.utils.data import default_collate

    from cliphand.config import LossWeights, TrainConfig
    from cliphand.data.dataset import HandDataset
    from cliphand.losses import heatmap2d_loss, heatmap_labels, heatmap_loss
    from cliphand.models.hierarchy import MeshHierarchy
    from cliphand.training.trainer import compute_losses

    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), MeshHierarchy.load(processed_hands / "hierarchy.npz"))
    batch = default_collate([HandDataset(processed_hands, "train", 8.0)[i] for i in range(4)])
    out = model(batch["image"], with_mesh=False)
    bins = [h.shape[-1] for h in out.heatmaps]
    weights = LossWeights(joints=0.0, heatmap=1.0, heatmap2d=1.0, clip=0.0, clip_labels=0.0)
    terms = {}
    for sigma in (0.5, 1.0):
        terms[sigma] = compute_losses(model, out, batch, TrainConfig(batch_size=4, amp="none", label_sigma=sigma,
                                                                     loss=weights), with_mesh=False)
        labels = heatmap_labels(batch["joints25d"], bins, sigma)
        torch.testing.assert_close(terms[sigma]["heatmap"], heatmap_loss(out.logits, labels))
        torch.testing.assert_close(terms[sigma]["heatmap2d"], heatmap2d_loss(out.heatmap2d, labels))
        # the label's spread, in bins, is sigma (the joints sit well inside the x range)
        x, centres = labels[0], torch.arange(bins[0]) + 0.5
        mean = (x * centres).sum(-1, keepdim=True)
        inside = (batch["joints25d"][..., 0] * bins[0] - 3 * sigma).gt(0) & (batch["joints25d"][..., 0] * bins[0]
                                                                           + 3 * sigma).lt(bins[0])
        sd = ((x * (centres - mean) ** 2).sum(-1).sqrt())[inside]
        assert sd.numel() and sd.sub(sigma).abs().max() < 0.1 * sigma + 0.05
    assert terms[0.5]["heatmap"] > terms[1.0]["heatmap"]


def test_the_pose_heads_residual_blocks(processed_hands):
    """``model.pose_blocks`` residual blocks of two 3x3 convs refine the fused map (0: the fusion
    alone); they keep its size, and a negative count is a ConfigError naming the key."""
    from cliphand.config import ConfigError, ModelConfig
    from cliphand.models.hierarchy import MeshHierarchy

    hierarchy = MeshHierarchy.load(processed_hands / "hierarchy.npz")
    heads = {n: CLIPHand3D(tiny_config(pose_blocks=n), hierarchy).pose_head for n in (0, 1, 2)}
    assert [len(h.refine) for h in heads.values()] == [0, 1, 2]
    per_block = 2 * (32 * 32 * 9 + 2 * 32)  # two bias-free 3x3 convs at width 32, and their BatchNorms
    sizes = [sum(p.numel() for p in h.parameters()) for h in heads.values()]
    assert [b - a for a, b in zip(sizes, sizes[1:])] == [per_block, per_block]
    pyramid = [torch.randn(2, c, 64 // s, 64 // s) for c, s in zip(CLIPHand3D(tiny_config(), hierarchy).backbone.channels,
                                                                   (4, 8, 16, 32))]
    shapes = {n: [tuple(t.shape) for t in h.eval()(pyramid)[0]] for n, h in heads.items()}
    assert shapes[0] == shapes[1] == shapes[2] == [(2, 21, 8), (2, 21, 8), (2, 21, 16)]
    with pytest.raises(ConfigError, match="model.pose_blocks"):
        ModelConfig(pose_blocks=-1).validate()


def test_the_depth_mixer_lets_each_joints_depth_read_the_others():
    """Without ``model.depth_mixer_layers`` a joint's z heatmap reads its own pooled depth token
    alone; with them it also reads the other joints' (and their 2D positions): moving one joint's 2D
    heatmap moves every joint's z and no other joint's x or y. A negative count is a ConfigError."""
    from cliphand.config import ConfigError, ModelConfig
    from cliphand.models.pose_head import DepthMixer, PoseHead

    channels = [16, 32, 64, 128]
    pyramid = [torch.randn(2, c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16, 32))]
    for layers in (0, 2):
        torch.manual_seed(0)
        head = PoseHead(channels, 64, width=32, joint_dim=64, mixer_layers=layers).eval()
        assert (head.mixer is None) == (layers == 0)
        if layers:
            assert isinstance(head.mixer, DepthMixer) and len(head.mixer.layers.layers) == layers
        with torch.no_grad():
            before = [t.clone() for t in head(pyramid)[0]]
            head.heatmap2d.weight[5] += torch.randn_like(head.heatmap2d.weight[5])
            after = head(pyramid)[0]
        others = torch.arange(21) != 5
        for axis in (0, 1):  # x and y: joint 5's alone
            assert torch.equal(before[axis][:, others], after[axis][:, others])
            assert not torch.equal(before[axis][:, 5], after[axis][:, 5])
        z_moved = (before[2][:, others] - after[2][:, others]).abs().amax().item()
        assert (z_moved > 1e-4) == (layers > 0), (layers, z_moved)
    with pytest.raises(ConfigError, match="model.depth_mixer_layers"):
        ModelConfig(depth_mixer_layers=-1).validate()


@pytest.mark.parametrize("shapes_pose", [False, True])
def test_the_contrastive_terms_and_what_they_train(processed_hands, shapes_pose):
    """``clip`` matches the prompts against the network's pose features, ``clip_labels`` against the
    labels' heatmaps through the same projection; both train the text side and the projection, and
    only ``clip`` with ``clip_shapes_pose`` reaches the pose head and the backbone."""
    from torch.utils.data import default_collate

    from cliphand.config import LossWeights, TrainConfig
    from cliphand.data.dataset import HandDataset
    from cliphand.losses import clip_loss, heatmap_labels, prompt_ids
    from cliphand.models.hierarchy import MeshHierarchy
    from cliphand.training.trainer import compute_losses

    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), MeshHierarchy.load(processed_hands / "hierarchy.npz"))
    batch = default_collate([HandDataset(processed_hands, "train", 8.0)[i] for i in range(4)])
    cfg = TrainConfig(batch_size=4, amp="none", clip_axes_per_step=3, clip_shapes_pose=shapes_pose,
                      loss=LossWeights(clip=1.0, clip_labels=1.0))
    out = model(batch["image"], with_mesh=False)
    terms = compute_losses(model, out, batch, cfg, with_mesh=False)
    labels = model.pose_features(heatmap_labels(batch["joints25d"], [h.shape[-1] for h in out.heatmaps],
                                                   cfg.label_sigma))
    expected = {"clip": 0.0, "clip_labels": 0.0}
    for a in range(3):
        prompts = list(batch["prompts"][a])
        text, ids, scale = model.encode_text(prompts, a), prompt_ids(prompts), model.logit_scales[a]()
        expected["clip"] += clip_loss(out.pose_feats[a], text, scale, ids)
        expected["clip_labels"] += clip_loss(labels[a], text, scale, ids)
    for name in expected:
        torch.testing.assert_close(terms[name], expected[name])
        model.zero_grad(set_to_none=True)
        terms[name].backward(retain_graph=True)
        assert all(p.grad is not None for p in model.text.adapters.parameters())
        assert all(p.grad is not None for p in model.pose_features.parameters())
        reaches_image = [p.grad is not None for p in model.pose_head.parameters()]
        assert all(reaches_image) if name == "clip" and shapes_pose else not any(reaches_image)
