"""DVC stage `preprocess`: see cliphand.pipeline.preprocess."""

from cliphand.pipeline import preprocess
from cliphand.stages import run_stage

if __name__ == "__main__":
    run_stage("preprocess", preprocess)
