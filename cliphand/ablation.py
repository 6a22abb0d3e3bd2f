"""The README's ablation table: each variant is a ``dvc exp run`` of the default pipeline.

``python -m cliphand.ablation`` runs every variant with ``dvc exp run --temp`` (a temporary copy,
so the workspace and its committed metrics are untouched; download and preprocess come from the
DVC cache), reads each experiment's ``metrics/evaluate.json`` from the Git ref DVC commits it to,
and writes ``metrics/ablation.json`` beside the full model's own row (the workspace's
``metrics/evaluate.json``). ``python -m cliphand.report`` renders the table from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from cliphand.files import write_json
from cliphand.metrics import ABLATION_KEYS
from cliphand.tracking import DEFAULT_URI

DB_FILE = DEFAULT_URI.removeprefix("sqlite:///")

# name → (what the row shows, the params ``dvc exp run -S`` sets)
ABLATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "no-contrastive": (
        "without the contrastive loss", ("pretrain.loss.clip=0", "finetune.loss.clip=0"),
    ),
    "direct-778": (
        "without coarse-to-fine (778 vertices regressed directly)",
        # ``++``: Hydra's add-or-override, since params.yaml leaves ``levels`` at its default.
        ("++model.mesh.levels=[778]", "model.mesh.widths=[32]"),
    ),
}


def command(name: str) -> list[str]:
    """The ``dvc exp run`` command of one ablation."""
    _, sets = ABLATIONS[name]
    return ["dvc", "exp", "run", "--temp", "-n", name, *(a for s in sets for a in ("-S", s))]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def experiment_metrics(name: str, path: str = "metrics/evaluate.json") -> tuple[str, str, dict]:
    """The baseline and commit of experiment ``name`` and its evaluation metrics.

    DVC files an experiment under the commit it started from; the newest such commit on this
    branch's first-parent history counts, so README-only commits after an experiment keep it.
    """
    refs = dict(
        line.split() for line in _git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").splitlines()
    )
    for baseline in _git("rev-list", "--first-parent", "HEAD").splitlines():
        rev = refs.get(f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}")
        if rev:
            return baseline, rev, json.loads(_git("show", f"{rev}:{path}"))
    raise FileNotFoundError(f"no experiment {name!r} on this branch; run `{shlex.join(command(name))}`")


def run(names: list[str]) -> None:
    """Run the named ablations with ``dvc exp run --temp``, replacing earlier ones of the same name.

    The temporary copy has its own working directory, so the default SQLite tracking store is
    pinned to this workspace's file: the ablations' MLflow runs land beside the default run's.
    """
    env = dict(os.environ)
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(DB_FILE).resolve()}")
    for name in names:
        subprocess.run(["dvc", "exp", "remove", name], check=False, capture_output=True)  # absent is fine
        print(f"$ {shlex.join(command(name))}", flush=True)
        subprocess.run(command(name), check=True, env=env)


def table(names: list[str], metrics_dir: Path = Path("metrics")) -> dict:
    """The full model's metrics and every ablation's, with the commands that produced them."""
    full = json.loads((metrics_dir / "evaluate.json").read_text())["model"]
    rows = [{"name": "full", "label": "full model", "command": "dvc repro", **{k: full[k] for k in ABLATION_KEYS}}]
    for name in names:
        baseline, rev, result = experiment_metrics(name)
        rows.append({
            "name": name, "label": ABLATIONS[name][0], "command": shlex.join(command(name)),
            "baseline": baseline, "rev": rev, **{k: result["model"][k] for k in ABLATION_KEYS},
        })
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cliphand.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(ABLATIONS),
                        help=f"ablations to run, of {', '.join(ABLATIONS)} (default: all)")
    parser.add_argument("--collect-only", action="store_true",
                        help="only gather finished experiments into metrics/ablation.json")
    parser.add_argument("--out", type=Path, default=Path("metrics/ablation.json"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ABLATIONS))
    if unknown:
        parser.error(f"unknown ablation(s) {unknown}; known: {list(ABLATIONS)}")
    try:
        if not args.collect_only:
            run(args.names)
        write_json(args.out, table(args.names))
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        print(f"ablation: {e}", file=sys.stderr)
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
