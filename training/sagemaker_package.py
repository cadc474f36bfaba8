"""The SageMaker training job's ``source_dir``: the code training imports and the requirements it
needs, nothing of the Lambda's.

    python -m training.sagemaker_package --out build/sagemaker-training

then a PyTorch estimator with ``source_dir="build/sagemaker-training"`` and
``entry_point="training/sagemaker_entry.py"``. SageMaker's framework container pip-installs the
``requirements.txt`` at the root of ``source_dir``; with the repository root that was the Lambda's
list (numpy pinned for Lambda, no pytorch-metric-learning, onnx or onnxruntime). Each pin is read
from the file that owns it; torch comes from the framework image.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("training", "model_factory", "gpu_endpoint", "chalicelib")  # what training imports (a test checks it)
# The file that owns each pin → the names taken from it (training/requirements.txt: all of it).
PINS_FROM = {
    ROOT / "training" / "requirements.txt": None,
    # The face engine training evaluates and exports with: the endpoint image's decoders,
    ROOT / "gpu_endpoint" / "requirements.txt": ("numpy", "pillow", "pillow-heif"),
    # and ONNX on CPU (the local server's and the bundle builder's pins).
    ROOT / "requirements-dev.txt": ("onnx", "onnxscript", "onnxruntime"),
}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if requirement and not requirement.startswith("-"):
            pins[requirement.split("==")[0].split("[")[0].lower()] = requirement
    return pins


def requirements() -> list[str]:
    """The training job's pinned requirements."""
    chosen: dict[str, str] = {}
    for path, names in PINS_FROM.items():
        pins = _pins(path)
        for name in names if names is not None else pins:
            chosen[name] = pins[name]
    return sorted(chosen.values())


def build(out: Path) -> Path:
    """Write the source_dir to ``out`` (replaced if it exists); returns it."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, out / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "web"))
    header = "# The SageMaker training job's requirements (python -m training.sagemaker_package); torch: the image's.\n"
    (out / "requirements.txt").write_text(header + "\n".join(requirements()) + "\n")
    return out


def main(argv: list | None = None) -> int:
    """Write the training job's source package."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "sagemaker-training")
    out = build(parser.parse_args(argv).out)
    print(f"source_dir: {out} (entry_point: training/sagemaker_entry.py)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
