"""SageMaker training job entry point (PyTorch framework container, ``source_dir`` = what
``python -m training.sagemaker_package`` writes, ``entry_point`` = training/sagemaker_entry.py).

Channels: ``training`` (a folder per person), ``bundle`` (the base bundle's files).
Hyperparameters are TrainConfig settings.  Checkpoints go to /opt/ml/checkpoints, which
SageMaker syncs to S3, so a restarted (spot) job resumes; the packaged bundle is written
to /opt/ml/model, so the job's model.tar.gz is a bundle the endpoint serves as is.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # SageMaker runs this file as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.config import TrainConfig  # noqa: E402
from training.pipeline import fine_tune  # noqa: E402


def hyperparameters() -> list:
    """SageMaker passes hyperparameters as JSON in SM_HPS (or strings in hyperparameters.json)."""
    if os.environ.get("SM_HPS"):
        values = json.loads(os.environ["SM_HPS"])
    else:
        path = Path("/opt/ml/input/config/hyperparameters.json")
        values = json.loads(path.read_text()) if path.exists() else {}
    return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in values.items()]


def main() -> int:
    """A SageMaker training job's entry point: train on its channels, write the model."""
    data = Path(os.environ.get("SM_CHANNEL_TRAINING", "/opt/ml/input/data/training"))
    bundle = Path(os.environ.get("SM_CHANNEL_BUNDLE", "/opt/ml/input/data/bundle"))
    model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    output_dir = Path(os.environ.get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    checkpoints = Path(os.environ.get("MEMSTUDIO_CHECKPOINT_DIR", "/opt/ml/checkpoints"))
    cfg = TrainConfig().with_overrides(hyperparameters())
    document = fine_tune(
        cfg,
        data,
        checkpoints / "run",
        bundle,
        checkpoints / "chips",
        log=lambda m: print(m, flush=True),
        progress=False,
    )
    model_dir.mkdir(parents=True, exist_ok=True)
    for path in Path(document["bundle"]).iterdir():
        shutil.copy2(path, model_dir / path.name)
    shutil.copytree(checkpoints / "run" / "report", output_dir / "report", dirs_exist_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
