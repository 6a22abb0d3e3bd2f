"""DVC stage `zeroshot`: see cliphand.pipeline.zero_shot."""

from cliphand.pipeline import zero_shot
from cliphand.stages import run_stage

if __name__ == "__main__":
    run_stage("zeroshot", zero_shot)
