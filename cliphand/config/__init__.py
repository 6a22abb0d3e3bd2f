"""The one place for configuration: params.yaml (with ``presets/*.yaml`` over it) read strictly into
typed dataclasses, one per section.

``strict`` builds dataclasses from nested dicts and names the key of any bad value; ``params``
declares every section and its checks, merges presets and reads the file. The dataclasses'
defaults equal params.yaml's values (``tests/test_params.py`` holds them to it), so code that
builds a section in Python gets what the pipeline gets.
"""

from cliphand.config.params import (
    AMP_MODES,
    DATA_SOURCES,
    MODEL_PARTS,
    SYNTHETIC_VIEWS,
    TEMPLATE_NAMES,
    AugmentConfig,
    BackboneConfig,
    BenchmarkConfig,
    DataConfig,
    DeviceSpeedups,
    EvaluateConfig,
    LaunchConfig,
    LossWeights,
    MeshConfig,
    ModelConfig,
    Params,
    PreprocessConfig,
    PromptConfig,
    Speedups,
    SyntheticConfig,
    TextConfig,
    TimingConfig,
    TrainConfig,
    ZeroShotConfig,
    apply_preset,
    merged_params,
    read_params,
)
from cliphand.config.strict import ConfigError, from_dict, load_yaml, positive

__all__ = [
    "AMP_MODES", "AugmentConfig", "DATA_SOURCES", "MODEL_PARTS", "SYNTHETIC_VIEWS", "TEMPLATE_NAMES", "BackboneConfig", "BenchmarkConfig", "ConfigError",
    "DataConfig", "DeviceSpeedups", "EvaluateConfig", "LaunchConfig", "LossWeights", "MeshConfig",
    "ModelConfig", "Params", "PreprocessConfig", "PromptConfig", "Speedups", "SyntheticConfig", "TextConfig",
    "TimingConfig", "TrainConfig", "ZeroShotConfig", "apply_preset", "from_dict", "load_yaml",
    "merged_params", "positive", "read_params",
]
