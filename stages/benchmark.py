"""DVC stage `benchmark`: see cliphand.benchmark.run."""

from cliphand.benchmark import run
from cliphand.stages import run_stage

if __name__ == "__main__":
    run_stage("benchmark", run)
