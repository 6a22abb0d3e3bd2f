"""Presets: overlays on params.yaml (``presets/<name>.yaml``), merged key by key."""

from __future__ import annotations

from pathlib import Path

import yaml

from cliphand.config import ConfigError, from_dict, load_params
from cliphand.files import write_text
from cliphand.params import Params

PRESETS_DIR = Path("presets")


def deep_merge(base: dict, overlay: dict) -> dict:
    """A copy of ``base`` with ``overlay``'s leaves written over it (nested dicts merge)."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def preset_params(name: str, params: Path = Path("params.yaml"), presets_dir: Path = PRESETS_DIR) -> dict:
    """params.yaml with preset ``name`` applied, checked like params.yaml itself."""
    path = presets_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in presets_dir.glob("*.yaml"))
        raise ConfigError(f"{path}: no such preset (known: {', '.join(known) or 'none'})")
    merged = deep_merge(load_params(params), load_params(path))
    from_dict(Params, merged, "")  # a preset that does not fit the schema fails here, naming the key
    return merged


def apply_preset(name: str, params: Path = Path("params.yaml"), presets_dir: Path = PRESETS_DIR) -> Path:
    """Write params.yaml with preset ``name`` merged in (atomically; comments are not kept)."""
    merged = preset_params(name, params, presets_dir)
    return write_text(params, f"# params.yaml with presets/{name}.yaml applied\n" + yaml.safe_dump(merged, sort_keys=False))
