"""Stage ``preprocess``: resize, split and pack the data; build the mesh hierarchy."""

from __future__ import annotations

from pathlib import Path

from cliphand import tracking
from cliphand.config import Params
from cliphand.data.preprocess import preprocess as pack
from cliphand.files import write_json
from cliphand.paths import METRICS, PROCESSED
from cliphand.stages import log_final, run_stage, sections


def preprocess(params: Params, raw: dict) -> dict:
    with tracking.stage_run("preprocess", sections(raw, "data", "preprocess")):
        stats = pack(Path(params.data.root), PROCESSED, params.preprocess)
        log_final(stats)
        write_json(METRICS / "preprocess.json", stats)
    return stats


if __name__ == "__main__":
    run_stage("preprocess", preprocess)
