"""DVC stage `evaluate`: see cliphand.pipeline.evaluate."""

from cliphand.pipeline import evaluate
from cliphand.stages import run_stage

if __name__ == "__main__":
    run_stage("evaluate", evaluate)
