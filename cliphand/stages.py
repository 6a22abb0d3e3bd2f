"""Entry-point plumbing for ``stages/*.py``: logging, params, one clear line on a bad input."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from cliphand.config import ConfigError
from cliphand.params import Params, read_params


def run_stage(name: str, work: Callable[[Params, dict], object], params_file: str = "params.yaml") -> None:
    """Read and check params.yaml, then run ``work``; a bad param exits 2 with the key named."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    try:
        params, raw = read_params(params_file)
    except ConfigError as e:
        print(f"{name}: bad params: {e}", file=sys.stderr)
        sys.exit(2)
    work(params, raw)
