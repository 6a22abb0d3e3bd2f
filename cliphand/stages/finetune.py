"""Stage ``finetune``: the mesh regressor and pose head from the pretrained weights, then the model
registered in MLflow (see ``cliphand.stages.train``)."""

from functools import partial

from cliphand.serving import log_model
from cliphand.stages import run_stage
from cliphand.stages.train import train

if __name__ == "__main__":
    run_stage("finetune", partial(train, phase="finetune", register=log_model))
