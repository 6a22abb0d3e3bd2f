"""The README's ablation table: each variant is a ``dvc exp run`` of the default pipeline, over seeds.

``python -m cliphand.ablation`` runs every variant at its seeds (the full model at every seed but
the workspace's own) with ``dvc exp run --temp`` (a temporary copy, so the workspace and its committed
metrics are untouched; download and preprocess come from the DVC cache), reads each experiment's
``metrics/evaluate.json`` from the Git ref DVC commits it to, and writes ``metrics/ablation.json``:
per variant, the mean and standard deviation over the seeds. The full model's seed
``pretrain.seed`` is the workspace's own ``dvc repro``. ``python -m cliphand.report`` renders it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from cliphand.config import read_params
from cliphand.files import write_json
from cliphand.metrics import METRICS, Metric
from cliphand.tracking import DEFAULT_URI

DB_FILE = DEFAULT_URI.removeprefix("sqlite:///")

# name → (what the row shows, the params ``dvc exp run -S`` sets, its seeds by default): the
# contrastive question over three seeds, the mesh variant over one (``--seeds`` for more).
ABLATIONS: dict[str, tuple[str, tuple[str, ...], tuple[int, ...]]] = {
    "full": ("full model", (), (0, 1, 2)),
    "no-contrastive": (
        "without the contrastive loss",
        ("pretrain.loss.clip=0", "pretrain.loss.clip_labels=0", "finetune.loss.clip=0", "finetune.loss.clip_labels=0"),
        (0, 1, 2),
    ),
    "direct-778": (
        "without coarse-to-fine (778 vertices regressed directly)",
        # ``++``: Hydra's add-or-override, since params.yaml leaves ``levels`` at its default.
        ("++model.mesh.levels=[778]", "model.mesh.widths=[32]"), (0,),
    ),
}


# The table's columns, each read from a stage's metrics file: the model's errors (aligned,
# root-relative, and with the root it estimates), the network's without the pose prior,
# and the retrieval the contrastive loss is for (top-1 among 16, the seed's demo).
COLUMNS: tuple[tuple[Metric, str, tuple[str, ...]], ...] = (
    *((METRICS[k], "evaluate", ("model", k)) for k in ("pa_mpjpe_mm", "pa_mpvpe_mm", "rr_mpjpe_mm", "mpjpe_mm")),
    (Metric("network_pa_mpjpe_mm", "PA-MPJPE, no pose prior (mm)", ".2f", False), "evaluate",
     ("network", "pa_mpjpe_mm")),
    *((Metric(f"zeroshot_top1_{axis}", f"zero-shot top-1 @16, {axis}", ".1%", True), "zeroshot",
       ("table", axis, "16", "top1")) for axis in "xyz"),
)
SOURCES = sorted({source for _, source, _ in COLUMNS})


def column_values(results: dict[str, dict]) -> dict[str, float]:
    """One run's columns from its metrics files' contents (``{"evaluate": …, "zeroshot": …}``)."""
    values = {}
    for metric, source, keys in COLUMNS:
        value = results[source]
        for k in keys:
            value = value[k]
        values[metric.key] = float(value)
    return values


def experiment_name(name: str, seed: int) -> str:
    return f"{name}-seed{seed}"


def command(name: str, seed: int) -> list[str]:
    """The ``dvc exp run`` command of one ablation at one seed (both training phases reseeded).

    It targets the stages the table reads, so DVC runs them and what they depend on, not the
    benchmark (whose speed does not depend on the weights: a minute a run saved)."""
    _, sets, _ = ABLATIONS[name]
    sets = (*sets, f"pretrain.seed={seed}", f"finetune.seed={seed}")
    return ["dvc", "exp", "run", "--temp", "-n", experiment_name(name, seed), *SOURCES,
            *(a for s in sets for a in ("-S", s))]


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
    raise FileNotFoundError(f"no experiment {name!r} on this branch; run `python -m cliphand.ablation`")


def variant_seeds(names: list[str], seeds: list[int] | None) -> dict[str, list[int]]:
    """Each variant's seeds: ``seeds`` for all where given, else the variant's own."""
    return {n: list(seeds) if seeds else list(ABLATIONS[n][2]) for n in names}


def runs(seeds: dict[str, list[int]], workspace_seed: int) -> list[tuple[str, int]]:
    """The (variant, seed) experiments to run: all but the workspace's own full-model run."""
    return [(n, s) for n, ss in seeds.items() for s in ss if not (n == "full" and s == workspace_seed)]


def run(todo: list[tuple[str, int]]) -> None:
    """Run the experiments with ``dvc exp run --temp``, replacing earlier ones of the same name.

    The temporary copy has its own working directory, so the default SQLite tracking store is
    pinned to this workspace's file: the experiments' MLflow runs land beside the default run's.
    """
    env = dict(os.environ)
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path(DB_FILE).resolve()}")
    for name, seed in todo:
        subprocess.run(["dvc", "exp", "remove", experiment_name(name, seed)], check=False, capture_output=True)
        print(f"$ {shlex.join(command(name, seed))}", flush=True)
        subprocess.run(command(name, seed), check=True, env=env)


def table(seeds: dict[str, list[int]], workspace_seed: int, metrics_dir: Path = Path("metrics")) -> dict:
    """Per variant, every seed's metrics, their mean and standard deviation, and the commands."""
    rows = []
    for name, name_seeds in seeds.items():
        per_seed = []
        for seed in name_seeds:
            if name == "full" and seed == workspace_seed:
                results = {s: json.loads((metrics_dir / f"{s}.json").read_text()) for s in SOURCES}
                per_seed.append({"seed": seed, "command": "dvc repro", **column_values(results)})
                continue
            found = {s: experiment_metrics(experiment_name(name, seed), f"metrics/{s}.json") for s in SOURCES}
            baseline, rev, _ = found[SOURCES[0]]  # one experiment: the same ref for every file
            per_seed.append({"seed": seed, "command": shlex.join(command(name, seed)), "baseline": baseline,
                             "rev": rev, **column_values({s: f[2] for s, f in found.items()})})
        summary = {
            k: {"mean": statistics.fmean(r[k] for r in per_seed),
                "sd": statistics.stdev(r[k] for r in per_seed) if len(per_seed) > 1 else 0.0}
            for k in (m.key for m, _, _ in COLUMNS)
        }
        _, sets, _ = ABLATIONS[name]
        rows.append({"name": name, "label": ABLATIONS[name][0], "sets": list(sets), "seeds": per_seed, **summary})
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cliphand.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(ABLATIONS),
                        help=f"variants to run, of {', '.join(ABLATIONS)} (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+",
                        help="training seeds for every variant named (default: each variant's own: "
                        + ", ".join(f"{n} {' '.join(map(str, v[2]))}" for n, v in ABLATIONS.items()) + ")")
    parser.add_argument("--collect-only", action="store_true",
                        help="only gather finished experiments into metrics/ablation.json")
    parser.add_argument("--out", type=Path, default=Path("metrics/ablation.json"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(ABLATIONS))
    if unknown:
        parser.error(f"unknown ablation(s) {unknown}; known: {list(ABLATIONS)}")
    workspace_seed = read_params()[0].pretrain.seed
    seeds = variant_seeds(args.names, args.seeds)
    try:
        if not args.collect_only:
            run(runs(seeds, workspace_seed))
        write_json(args.out, table(seeds, workspace_seed))
    except (FileNotFoundError, subprocess.CalledProcessError) as e:
        print(f"ablation: {e}", file=sys.stderr)
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
