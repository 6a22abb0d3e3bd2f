"""DVC stage `pretrain`: see cliphand.pipeline.train."""

from functools import partial

from cliphand.pipeline import train
from cliphand.stages import run_stage

if __name__ == "__main__":
    run_stage("pretrain", partial(train, phase="pretrain"))
