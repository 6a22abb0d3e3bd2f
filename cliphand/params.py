"""params.yaml as typed dataclasses: one section per stage, checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cliphand.config import ConfigError, from_dict, load_params, positive
from cliphand.data.preprocess import PreprocessConfig
from cliphand.models.cliphand3d import ModelConfig
from cliphand.models.export import Speedups
from cliphand.text.prompts import TEMPLATES
from cliphand.training.config import LaunchConfig, TrainConfig

SOURCES = ("synthetic", "freihand")


@dataclass
class SyntheticConfig:
    """The generated default dataset."""

    n_train: int = 1000
    n_eval: int = 250
    image_size: int = 224
    seed: int = 0
    workers: int = 2
    views: str = "upright"

    def validate(self, prefix: str = "data.synthetic") -> None:
        from cliphand.data.synthetic import VIEWS

        if self.views not in VIEWS:
            raise ConfigError(f"{prefix}.views: one of {VIEWS}, got {self.views!r}")


@dataclass
class DataConfig:
    """Where the FreiHAND-layout data comes from and where it lands."""

    source: str = "synthetic"
    root: str = "data/raw"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def validate(self, prefix: str = "data") -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"{prefix}.source: one of {SOURCES}, got {self.source!r}")


@dataclass
class PromptConfig:
    """Which prompt template the text side reads."""

    template: str = "hand_joints"

    def validate(self, prefix: str = "prompts") -> None:
        if self.template not in TEMPLATES:
            raise ConfigError(f"{prefix}.template: one of {sorted(TEMPLATES)}, got {self.template!r}")


@dataclass
class ZeroShotConfig:
    """Batch sizes of the retrieval table and the demo figure's batch and image."""

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
    warmup: int = 2
    reps: int = 10

    def validate(self, prefix: str) -> None:
        for name in ("batch_size", "reps"):
            positive(getattr(self, name), f"{prefix}.{name}")
        if self.warmup < 0:
            raise ConfigError(f"{prefix}.warmup: must not be negative, got {self.warmup}")


@dataclass
class DeviceSpeedups:
    """The optimised inference path per kind of device."""

    cpu: Speedups = field(default_factory=lambda: Speedups(channels_last=True, bf16=True))
    cuda: Speedups = field(default_factory=lambda: Speedups(channels_last=True, bf16=True))


@dataclass
class BenchmarkConfig:
    """What the benchmark stage times (``cliphand.benchmark``)."""

    sizes: tuple[str, ...] = ("default", "paper")  # default: params.yaml's model; else presets/<name>.yaml
    latency: TimingConfig = field(default_factory=TimingConfig)
    throughput: TimingConfig = field(default_factory=lambda: TimingConfig(batch_size=32, warmup=1, reps=2))
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


@dataclass
class Params:
    """The whole params.yaml."""

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    train: LaunchConfig = field(default_factory=LaunchConfig)
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    zeroshot: ZeroShotConfig = field(default_factory=ZeroShotConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)

    def validate(self, prefix: str = "") -> None:
        self.pretrain.validate("pretrain")
        self.finetune.validate("finetune")
        for phase in ("pretrain", "finetune"):
            getattr(self, phase).micro_batch(self.train.nproc, phase)  # the batch splits over train.nproc
        if self.preprocess.image_size != self.model.image_size:
            raise ConfigError(
                f"preprocess.image_size: {self.preprocess.image_size} differs from model.image_size "
                f"{self.model.image_size}"
            )


def read_params(path: Path | str = "params.yaml") -> tuple[Params, dict]:
    """The typed params and the raw dict (for logging), or a ConfigError naming the key."""
    raw = load_params(path)
    return from_dict(Params, raw, ""), raw
