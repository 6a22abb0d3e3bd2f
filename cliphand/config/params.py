"""Every section of params.yaml as a typed dataclass, and the one way to read the file.

The defaults equal params.yaml's values (``tests/test_params.py`` holds them to it). Names whose
allowed values are fixed are ``Literal`` types, so the schema itself rejects a typo; the modules
that act on them (the synthetic generator, the prompt templates) take their lists from here.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from cliphand.config.strict import ConfigError, from_dict, load_yaml, positive
from cliphand.skeleton import NUM_JOINTS

DataSource = Literal["synthetic", "freihand"]
SyntheticViews = Literal["upright", "any"]  # FreiHAND-like upright views, or uniform rotations
TemplateName = Literal["hand_joints", "authors", "terse"]  # cliphand.text.prompts.TEMPLATES
AmpMode = Literal["auto", "none", "bf16", "fp16"]  # auto: bf16 where the device has native bf16 kernels, else none
ModelPart = Literal["backbone", "pose_head", "pose_features", "mesh", "text", "logit_scales"]  # CLIPHand3D's trained parts
DATA_SOURCES = typing.get_args(DataSource)
SYNTHETIC_VIEWS = typing.get_args(SyntheticViews)
TEMPLATE_NAMES = typing.get_args(TemplateName)
AMP_MODES = typing.get_args(AmpMode)
MODEL_PARTS = typing.get_args(ModelPart)
PRESETS_DIR = Path("presets")


# --- data --------------------------------------------------------------------------------------


@dataclass
class SyntheticConfig:
    """The generated default dataset (``data.synthetic``)."""

    n_train: int = 3000  # training poses, each rendered over 4 backgrounds
    n_eval: int = 512
    image_size: int = 128  # rendered size (FreiHAND's images are 224)
    seed: int = 0
    workers: int = 2
    views: SyntheticViews = "upright"


@dataclass
class DataConfig:
    """Where the FreiHAND-layout data comes from and where it lands (``data``)."""

    source: DataSource = "synthetic"
    root: str = "data/raw"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class PreprocessConfig:
    """Input size, validation share and decoding threads (``preprocess``)."""

    image_size: int = 96
    val_fraction: float = 0.1
    seed: int = 0
    workers: int = 2

    def validate(self, prefix: str = "preprocess") -> None:
        if self.image_size < 32:
            raise ConfigError(f"{prefix}.image_size: must be >= 32, got {self.image_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"{prefix}.val_fraction: must be in [0, 1), got {self.val_fraction}")
        if self.workers < 1:
            raise ConfigError(f"{prefix}.workers: must be >= 1, got {self.workers}")


# --- model -------------------------------------------------------------------------------------


@dataclass
class BackboneConfig:
    """A timm CNN and where its weights come from (``model.backbone``).

    ``pretrained``: ``None`` (random init, the offline default), ``"timm"`` (timm's own hub
    download, needs internet) or the path of a local checkpoint of the classification model.
    """

    name: str = "resnet10t"
    pretrained: str | None = None


@dataclass
class MeshConfig:
    """Widths per level (paper: 256, 128, 64, 32), transformer depth and attention head size.

    The paper uses 8 heads at every level, i.e. 4-dimensional heads at width 32; on a CPU those
    cost 15x the time of one 32-dimensional head over 778 nodes (measured: 526 vs 35 ms for a
    batch of 32), so heads here have ``head_dim`` channels: 8 heads at width 256, 1 at width 32.
    """

    widths: tuple[int, ...] = (256, 128, 64, 32)
    layers: int = 2
    head_dim: int = 32
    # Mesh levels used, a subset of the hierarchy's; (778,) regresses the mesh directly from the
    # joints (the paper's "without coarse-to-fine" ablation) and then needs one width.
    levels: tuple[int, ...] = (98, 195, 389, 778)
    upsample: Literal["fixed", "learned"] = "fixed"  # blends between levels: as built, or trained (rows stay convex)


@dataclass
class TextConfig:
    """The text tower (by open_clip name, or the small random-init one), its weights, the adapters."""

    model: str = "small"  # "small" or an open_clip model name such as "ViT-B-32"
    pretrained: str | None = None  # None: random init; an open_clip tag ("openai"); or a file path
    frozen: bool = True  # the adapters learn the joints' order far faster over a fixed tower (docs/recipe.md)
    embed_dim: int = 512  # joint pose/text embedding space
    adapter_layers: int = 2
    adapter_heads: int = 2
    cache_size: int = 12288  # LRU entries (frozen towers only; 3 per pose to hit across epochs); 0 disables the cache
    cache_fp16: bool = True
    quick_gelu: bool = False  # OpenAI's weights need it; forced on for open_clip tags that say so
    context_length: int = 77
    # The small tower only (open_clip names carry their own sizes).
    width: int = 128
    layers: int = 2
    heads: int = 2


@dataclass
class ModelConfig:
    """The whole model (``model``)."""

    image_size: int = 96
    embed_dim: int = 512
    depth_range: float = 3.5  # root-relative depth range, in units of the hand's scale
    pose_width: int = 128  # channels of the pose head's stride-8 fusion
    pose_blocks: int = 2  # residual blocks (two 3x3 convs each) after the fusion: context to tell the fingers apart
    joint_dim: int = 64  # depth features per joint
    depth_mixer_layers: int = 0  # Transformer layers across the joints' depth tokens before the z heatmap
    heatmap_stride: int = 8  # pixels per x/y heatmap bin (paper: 8, i.e. 32 bins at 256 px)
    prior_components: int = 32  # principal directions of the pose prior (cliphand.models.prior); 0: none
    lifter_width: int = 256  # the depth lifter's width (cliphand.models.lifter); 0: none, the pose head's depth
    lifter_steps: int = 1500  # its training steps, in the finetune stage after the network's
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    text: TextConfig | None = field(default_factory=TextConfig)

    def validate(self, prefix: str = "model") -> None:
        """Raise a ConfigError naming the first unusable key."""
        if self.image_size < 64 or self.image_size % 32:
            raise ConfigError(f"{prefix}.image_size: must be a multiple of 32 and >= 64, got {self.image_size}")
        if self.heatmap_stride not in (4, 8):
            raise ConfigError(f"{prefix}.heatmap_stride: 4 or 8, got {self.heatmap_stride}")
        for name in ("embed_dim", "depth_range", "pose_width", "joint_dim"):
            positive(getattr(self, name), f"{prefix}.{name}")
        for name in ("pose_blocks", "depth_mixer_layers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{prefix}.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.prior_components <= 3 * NUM_JOINTS:
            raise ConfigError(f"{prefix}.prior_components: 0 to {3 * NUM_JOINTS}, got {self.prior_components}")
        if self.lifter_width < 0 or self.lifter_steps < 1:
            raise ConfigError(f"{prefix}.lifter_width / lifter_steps: >= 0 / >= 1, got {self.lifter_width} / "
                              f"{self.lifter_steps}")
        if self.text is not None and self.text.embed_dim != self.embed_dim:
            raise ConfigError(
                f"{prefix}.text.embed_dim: {self.text.embed_dim} differs from {prefix}.embed_dim "
                f"{self.embed_dim}: pose and text features share one space"
            )

    def offline(self) -> ModelConfig:
        """A copy that downloads no weights: for a model whose weights come from a file, or whose
        speed alone is measured."""
        import copy

        cfg = copy.deepcopy(self)
        cfg.backbone.pretrained = None
        if cfg.text is not None:
            cfg.text.pretrained = None
        return cfg


@dataclass
class PromptConfig:
    """Which prompt template the text side reads (``prompts``)."""

    template: TemplateName = "hand_joints"


# --- training ----------------------------------------------------------------------------------


@dataclass
class LaunchConfig:
    """How the training stages run (``launch``): ``nproc`` processes on this machine (torchrun, DDP)."""

    nproc: int = 1

    def validate(self, prefix: str = "launch") -> None:
        positive(self.nproc, f"{prefix}.nproc")


@dataclass
class LossWeights:
    """Weights of the loss terms (the paper names them but gives no values)."""

    joints: float = 1.0  # L1 on 2.5D joints from the heatmaps' soft-argmax
    bones: float = 0.0  # L1 on 2.5D bone vectors (child minus parent): the hand's shape, not its place
    heatmap: float = 0.5  # KL of the 1D heatmaps against Gaussian labels
    heatmap2d: float = 0.5  # KL of the joints' 2D heatmaps against their labels' product (one peak per joint)
    clip: float = 0.05  # per-axis contrastive pose-text loss, summed over x, y, z
    clip_labels: float = 0.05  # the same with the labels' heatmaps as pose features: teaches the text side from step one
    verts: float = 0.0  # L1 on 2.5D vertices, every mesh level
    mesh_joints: float = 0.0  # L1 on the joints regressed from the mesh
    edges: float = 0.0  # L1 between the full mesh's edge lengths and the truth's (needs the topology)

    def validate(self, prefix: str) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise ConfigError(f"{prefix}.{name}: must not be negative, got {value}")


@dataclass
class AugmentConfig:
    """Training-time augmentation (``<phase>.augment``); every warp moves the targets, prompts and K along.

    A sample's draw depends only on (``seed``, epoch, sample), so runs and resumed runs see the same.
    """

    rotate_deg: float = 0.0  # in-plane roll up to ± this: the hand turns about the camera's optical axis
    scale: float = 0.0  # zoom by 1 ± this about the principal point (the focal length changes)
    translate: float = 0.0  # principal-point shift up to ± this fraction of the crop
    color: float = 0.0  # brightness, contrast and saturation each scaled by 1 ± this

    def validate(self, prefix: str) -> None:
        for name, value in vars(self).items():
            if value < 0:
                raise ConfigError(f"{prefix}.{name}: must not be negative, got {value}")
        if self.scale >= 1 or self.color >= 1:
            raise ConfigError(f"{prefix}: scale and color must be below 1, got {self.scale}, {self.color}")

    @property
    def enabled(self) -> bool:
        return any(vars(self).values())


@dataclass
class TrainConfig:
    """One training phase (``pretrain`` or ``finetune``).

    ``batch_size`` is the global batch of one optimiser step: it is split over the processes
    (``launch.nproc``) and then over ``grad_accum`` micro-batches per process, so changing either
    leaves the optimisation unchanged except for what is computed over one micro-batch: the
    contrastive loss's negatives are the ``batch_size / grad_accum`` samples of a micro-batch
    gathered over every process, and BatchNorm's statistics come from ``batch_size / grad_accum``
    samples on CUDA (SyncBatchNorm) but from one process's micro-batch on CPU.
    """

    epochs: int = 5
    epoch_steps: int = 0  # at most this many optimiser steps per epoch, each on a fresh shuffle (0: a whole pass)
    batch_size: int = 16
    grad_accum: int = 1  # micro-batches accumulated into one optimiser step
    lr: float = 0.004
    weight_decay: float = 0.05
    warmup_steps: int = 50
    decay_fraction: float = 0.3  # the last share of the steps over which the lr decays (cosine); before it, held at lr
    grad_clip: float = 1.0
    workers: int = 1
    seed: int = 0
    amp: AmpMode = "auto"
    device: str = "auto"
    checkpoint_every: int = 200  # optimiser steps between mid-epoch checkpoints
    clip_axes_per_step: int = 1  # contrastive axes per step, in turn (1-3); the loss is scaled to match
    clip_shapes_pose: bool = False  # the contrastive loss trains the pose head and backbone too (the paper: true)
    label_sigma: float = 0.5  # width of the heatmaps' Gaussian labels, in bins (heatmap, heatmap2d, clip_labels)
    loss: LossWeights = field(default_factory=LossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # The model's parts whose weights this phase leaves as it found them (in eval mode: BatchNorm keeps its statistics).
    frozen: tuple[ModelPart, ...] = ()

    def validate(self, prefix: str) -> None:
        """Raise a ConfigError naming the first unusable key."""
        for name in ("epochs", "batch_size", "grad_accum", "lr", "checkpoint_every", "label_sigma"):
            positive(getattr(self, name), f"{prefix}.{name}")
        self.micro_batch(1, prefix)
        if not 0 < self.decay_fraction <= 1:
            raise ConfigError(f"{prefix}.decay_fraction: must be in (0, 1], got {self.decay_fraction}")
        if self.clip_axes_per_step not in (1, 2, 3):
            raise ConfigError(f"{prefix}.clip_axes_per_step: 1, 2 or 3, got {self.clip_axes_per_step}")
        for name in ("epoch_steps", "weight_decay", "warmup_steps", "grad_clip", "workers", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{prefix}.{name}: must not be negative, got {getattr(self, name)}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"{prefix}.device: 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        self.loss.validate(f"{prefix}.loss")

    def micro_batch(self, world_size: int, prefix: str) -> int:
        """Samples per process and micro-batch; a ConfigError unless ``batch_size`` splits evenly."""
        parts = world_size * self.grad_accum
        if self.batch_size % parts:
            raise ConfigError(
                f"{prefix}.batch_size: {self.batch_size} does not split into {world_size} process(es) "
                f"x {self.grad_accum} micro-batch(es) (grad_accum)"
            )
        if self.batch_size // self.grad_accum < 2:
            raise ConfigError(
                f"{prefix}.batch_size: the contrastive loss needs >= 2 samples per micro-batch over all "
                f"processes, got {self.batch_size} / grad_accum {self.grad_accum}"
            )
        return self.batch_size // parts


def _finetune_defaults() -> TrainConfig:
    return TrainConfig(
        epochs=1, epoch_steps=170, lr=0.001, weight_decay=0.0001, decay_fraction=1.0, frozen=("backbone", "pose_head"),
        loss=LossWeights(joints=0.0, heatmap=0.0, heatmap2d=0.0, clip=0.0, clip_labels=0.0, verts=1.0, mesh_joints=1.0),
    )


# --- evaluation and speed ----------------------------------------------------------------------


@dataclass
class ZeroShotConfig:
    """Batch sizes of the retrieval table and the demo figure's batch and image (``zeroshot``)."""

    batch_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)
    figure_batch_size: int = 16
    figure_index: int = 5

    def validate(self, prefix: str = "zeroshot") -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 2:
            raise ConfigError(f"{prefix}.batch_sizes: need batch sizes >= 2, got {list(self.batch_sizes)}")
        if not 0 <= self.figure_index < self.figure_batch_size:
            raise ConfigError(f"{prefix}.figure_index: must be in [0, figure_batch_size), got {self.figure_index}")


@dataclass
class EvaluateConfig:
    """Inference batch size of the evaluation stage, and the image of docs/prediction.png."""

    batch_size: int = 64
    figure_index: int = 1

    def validate(self, prefix: str = "evaluate") -> None:
        if self.batch_size < 1:
            raise ConfigError(f"{prefix}.batch_size: must be >= 1, got {self.batch_size}")
        if self.figure_index < 0:
            raise ConfigError(f"{prefix}.figure_index: must be >= 0, got {self.figure_index}")


@dataclass
class TimingConfig:
    """One timed loop of the benchmark: batch size, untimed warm-up calls, timed repetitions."""

    batch_size: int = 1
    warmup: int = 3
    reps: int = 10

    def validate(self, prefix: str) -> None:
        for name in ("batch_size", "reps"):
            positive(getattr(self, name), f"{prefix}.{name}")
        if self.warmup < 0:
            raise ConfigError(f"{prefix}.warmup: must not be negative, got {self.warmup}")


@dataclass
class Speedups:
    """Which inference optimisations are on (each kept only where the benchmark shows a gain).

    Inference mode is always on. ``channels_last``: NHWC weights and images, the layout oneDNN's and
    cuDNN's fastest convolutions read. ``bf16``: autocast to bfloat16 (tensor cores on a GPU, AMX or
    AVX-512 on an x86 CPU; outputs come back as float32; skipped on a device without native bf16
    kernels, where it would slow inference down). ``compile``: ``torch.compile``.
    """

    channels_last: bool = True
    bf16: bool = True
    compile: bool = False


@dataclass
class DeviceSpeedups:
    """The optimised inference path per kind of device."""

    cpu: Speedups = field(default_factory=Speedups)
    cuda: Speedups = field(default_factory=lambda: Speedups(compile=True))


@dataclass
class BenchmarkConfig:
    """What the benchmark stage times (``cliphand.benchmark``)."""

    sizes: tuple[str, ...] = ("default", "paper")  # default: params.yaml's model; else presets/<name>.yaml
    latency: TimingConfig = field(default_factory=TimingConfig)
    throughput: TimingConfig = field(default_factory=lambda: TimingConfig(batch_size=16, warmup=1, reps=2))
    train: TimingConfig = field(default_factory=lambda: TimingConfig(batch_size=8, warmup=1, reps=2))
    loader_batches: int = 20
    cuda: bool = True
    speedups: DeviceSpeedups = field(default_factory=DeviceSpeedups)

    def validate(self, prefix: str = "benchmark") -> None:
        if not self.sizes or len(set(self.sizes)) != len(self.sizes):
            raise ConfigError(f"{prefix}.sizes: need distinct size names, got {list(self.sizes)}")
        if self.train.batch_size < 2:
            raise ConfigError(f"{prefix}.train.batch_size: the contrastive loss needs >= 2, got {self.train.batch_size}")
        positive(self.loader_batches, f"{prefix}.loader_batches")


# --- the whole file ----------------------------------------------------------------------------


@dataclass
class Params:
    """The whole params.yaml."""

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    finetune: TrainConfig = field(default_factory=_finetune_defaults)
    zeroshot: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)

    def validate(self, prefix: str = "") -> None:
        for phase in ("pretrain", "finetune"):
            getattr(self, phase).micro_batch(self.launch.nproc, phase)  # the batch splits over launch.nproc
        if self.preprocess.image_size != self.model.image_size:
            raise ConfigError(
                f"preprocess.image_size: {self.preprocess.image_size} differs from model.image_size "
                f"{self.model.image_size}"
            )


def deep_merge(base: dict, overlay: dict) -> dict:
    """A copy of ``base`` with ``overlay``'s leaves written over it (nested dicts merge)."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_preset(name: str, presets_dir: Path = PRESETS_DIR) -> dict:
    """``presets/<name>.yaml``, or a ConfigError that lists the known presets."""
    path = presets_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in presets_dir.glob("*.yaml"))
        raise ConfigError(f"{path}: no such preset (known: {', '.join(known) or 'none'})")
    return load_yaml(path)


def merged_params(raw: dict, preset: str | None = None, presets_dir: Path = PRESETS_DIR) -> dict:
    """``raw`` params with ``presets/<preset>.yaml`` merged over it (none: ``raw`` itself): the one merger."""
    return raw if preset is None else deep_merge(raw, load_preset(preset, presets_dir))


def read_params(
    path: Path | str = "params.yaml", preset: str | None = None, presets_dir: Path = PRESETS_DIR
) -> tuple[Params, dict]:
    """The typed params (with an optional preset over them) and the raw dict, or a ConfigError naming the key."""
    if preset is not None:
        load_preset(preset, presets_dir)  # a missing preset is named before a missing params.yaml
    raw = merged_params(load_yaml(path), preset, presets_dir)
    return from_dict(Params, raw, ""), raw


def apply_preset(name: str, params: Path = Path("params.yaml"), presets_dir: Path = PRESETS_DIR) -> Path:
    """Write params.yaml with preset ``name`` merged in (atomically; comments are not kept)."""
    from cliphand.files import write_text

    _, merged = read_params(params, name, presets_dir)  # a preset that does not fit the schema fails here
    return write_text(params, f"# params.yaml with presets/{name}.yaml applied\n" + yaml.safe_dump(merged, sort_keys=False))
