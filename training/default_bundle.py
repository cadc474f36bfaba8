"""The bundle the product serves by default, built in three cached steps:
``python -m training.default_bundle`` (``./dev setup`` runs it).

1. the stock fusion, dlib's ResNet + HSE faceres, calibrated (``build_bundle.build``) → .cache/bundle-stock;
2. dlib's ResNet fine-tuned with ArcFace on the training identities of ../shared/facedata
   (``training``, its default settings), from the stock bundle's detector and alignment → .cache/fine-tune;
3. the fine-tuned dlib fused with faceres, each part embedding a face and its mirror image (test-time
   flip), calibrated again → .cache/bundle.

Why the fine-tuned fusion: on held-out identities it wins East-Asian and overall search F1 and loses
no slice more than 0.001 (docs/search.md; search_quality_dlib-ft-faceres-v1.0d5bacd0c3.json against
search_quality_dlib-faceres-v1.3cfb4a2779.json). Why the flip: it was chosen on the calibration
identities, where it wins every measure the builder fits (normalised search F1 0.898 → 0.906, people
grouping BCubed F1 0.955 → 0.961, pair AUC); held out it raises East-Asian search F1 0.838 → 0.853 and
costs the rest 0.006 (benchmarks/results/search_quality.json against the file above). Steps 2 and 3
reuse step 1's detections (``facedata.largest_faces``), so together they cost minutes, not a rebuild.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from gpu_endpoint.bundle import DEFAULT_DIR, Manifest
from model_factory.build_bundle import STOCK_DIR, build, cli_parser, run_cli
from model_factory.facedata import facedata_root

from .config import TrainConfig
from .pipeline import fine_tune

FINE_TUNE_DIR = DEFAULT_DIR.parent / "fine-tune"


def _training_key(stock: Path, cfg) -> str:
    """Changes with the stock bundle, the training settings and training's code."""
    digest = hashlib.sha256(json.dumps([Manifest.load(stock).version, cfg.to_dict()], sort_keys=True).encode())
    for source in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def fine_tuned(stock: Path, facedata: Path, run_dir: Path = FINE_TUNE_DIR, force: bool = False, log=print) -> Path:
    """The fine-tuned embedder's bundle (``run_dir/bundle``), trained once per key."""
    cfg = TrainConfig()
    key = _training_key(stock, cfg)
    stamp = run_dir / "key"
    if not force and stamp.exists() and stamp.read_text() == key and Manifest.exists(run_dir / "bundle"):
        log(f"fine-tuned embedder up to date: {run_dir / 'bundle'}")
        return run_dir / "bundle"
    shutil.rmtree(run_dir, ignore_errors=True)  # a stale checkpoint must not be resumed
    log(f"fine-tuning dlib's ResNet on the training identities of {facedata}")
    fine_tune(cfg, facedata, run_dir, base_bundle=stock, log=log, progress=False)
    stamp.write_text(key)
    return run_dir / "bundle"


def build_default(out_dir: Path = DEFAULT_DIR, facedata: Path | None = None, force: bool = False, log=print) -> Path:
    """Build the served default bundle (stock, then fine-tuned, then fused) unless it is up to date."""
    facedata = facedata or facedata_root()
    if facedata is None:
        raise SystemExit("../shared/facedata (or FACEDATA_DIR) is needed to build the bundle")
    stock = build(STOCK_DIR, facedata, force, log)
    return build(out_dir, facedata, force, log, dlib_from=fine_tuned(stock, facedata, force=force, log=log), flip=True)


def main(argv=None) -> int:
    """Build the served default bundle."""
    args = cli_parser(__doc__, DEFAULT_DIR).parse_args(argv)
    return run_cli(args, lambda log: build_default(args.out, args.facedata, args.force, log))


if __name__ == "__main__":
    sys.exit(main())
