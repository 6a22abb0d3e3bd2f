"""params.yaml as typed dataclasses: one section per stage, checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cliphand.config import ConfigError, from_dict, load_params
from cliphand.data.preprocess import PreprocessConfig
from cliphand.models.cliphand3d import ModelConfig
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
    benchmark: dict = field(default_factory=dict)

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
