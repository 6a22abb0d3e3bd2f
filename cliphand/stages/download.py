"""Stage ``download``: generate the synthetic set, or fetch FreiHAND, into ``data.root``; draw the
README's contact sheet."""

from __future__ import annotations

import time
from pathlib import Path

from cliphand import tracking
from cliphand.config import Params
from cliphand.data.download import fetch_freihand
from cliphand.data.synthetic import generate, write_contact_sheet
from cliphand.files import write_json
from cliphand.paths import DOCS, METRICS
from cliphand.stages import log_artifacts, log_final, run_stage, sections


def download(params: Params, raw: dict) -> dict:
    root = Path(params.data.root)
    with tracking.stage_run("download", sections(raw, "data")):
        if params.data.source == "synthetic":
            s = params.data.synthetic
            stats = generate(root, s.n_train, s.n_eval, s.image_size, s.seed, s.workers, views=s.views)
        else:
            start = time.perf_counter()
            fetch_freihand(root)
            stats = {"seconds": time.perf_counter() - start}
        stats = {"source": params.data.source, **stats}
        log_final(stats)
        write_json(METRICS / "data.json", stats)
        # The README's look at the data: the first 16 training images, skeletons drawn.
        log_artifacts(write_contact_sheet(root, DOCS / "contact_sheet.png"))
    return stats


if __name__ == "__main__":
    run_stage("download", download)
