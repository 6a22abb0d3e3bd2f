"""Entry-point plumbing for ``stages/*.py``: logging, params, one clear line on a bad input."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from cliphand.config import ConfigError
from cliphand.params import Params, read_params
from cliphand.tracking import TrackingError, check_server, tracking_uri


def run_stage(name: str, work: Callable[[Params, dict], object], params_file: str = "params.yaml") -> None:
    """Check params.yaml and the tracking server, then run ``work``.

    A bad param exits 2 naming the key; an MLflow server that does not answer exits 3, before
    any data is read or any training starts.
    """
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    try:
        params, raw = read_params(params_file)
    except ConfigError as e:
        print(f"{name}: bad params: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        check_server(tracking_uri())
    except TrackingError as e:
        print(f"{name}: {e}", file=sys.stderr)
        sys.exit(3)
    work(params, raw)
