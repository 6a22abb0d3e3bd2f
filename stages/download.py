"""DVC stage `download`: see cliphand.pipeline.download."""

from cliphand.pipeline import download
from cliphand.stages import run_stage

if __name__ == "__main__":
    run_stage("download", download)
