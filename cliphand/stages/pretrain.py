"""Stage ``pretrain``: contrastive pretraining: pose head and pose-aware features against the prompts (see ``cliphand.stages.train``)."""

from functools import partial

from cliphand.stages import run_stage
from cliphand.stages.train import train

if __name__ == "__main__":
    run_stage("pretrain", partial(train, phase="pretrain"))
