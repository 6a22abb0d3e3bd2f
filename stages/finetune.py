"""DVC stage `finetune`: see cliphand.pipeline.train."""

from functools import partial

from cliphand.pipeline import train
from cliphand.stages import run_stage

if __name__ == "__main__":
    run_stage("finetune", partial(train, phase="finetune"))
