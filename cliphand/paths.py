"""Where the pipeline's files live, relative to the repository root (mirrored in dvc.yaml).

``data/`` raw and processed data; ``models/`` model files; ``metrics/`` DVC metrics; ``plots/`` DVC
plots data and figures; ``checkpoints/`` a training stage's resume state (removed once it
completes); ``docs/`` the README's figures.
"""

from pathlib import Path

PROCESSED = Path("data/processed")
MODELS = Path("models")
METRICS = Path("metrics")
PLOTS = Path("plots")
CHECKPOINTS = Path("checkpoints")
DOCS = Path("docs")
MODEL_FILES = {"pretrain": MODELS / "pretrain.pt", "finetune": MODELS / "model.pt"}
