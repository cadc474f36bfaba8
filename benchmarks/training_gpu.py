"""Fine-tuning on a GPU machine: time per epoch and a sweep of settings.

The photos do not travel to the lent GPU machine (64 MiB carry limit), so the
face chips go instead, JPEG-encoded (quality 95):

    python -m benchmarks.training_gpu pack            # here: .devcarry/chips-jpeg.npz
    python -m benchmarks.training_gpu run --grid '{"lr": [1e-5, 1e-4]}' --epochs 8   # there

``run`` trains every combination with training.sweep on CUDA, from the dlib weights
in .devcarry, and writes benchmarks/results/training_gpu.json (or --out).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PACKED = ROOT / ".devcarry" / "chips-jpeg.npz"


def pack(out: Path = PACKED) -> Path:
    from gpu_endpoint.bundle import DEFAULT_DIR
    from model_factory.facedata import facedata_root
    from training.config import TrainConfig
    from training.pipeline import DEFAULT_CACHE, load_chips

    chips = load_chips(TrainConfig(), facedata_root(), DEFAULT_DIR, DEFAULT_CACHE)
    blobs = []
    for chip in chips.chips:
        buffer = io.BytesIO()
        Image.fromarray(chip).save(buffer, format="JPEG", quality=95)
        blobs.append(buffer.getvalue())
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        out,
        jpeg=np.frombuffer(b"".join(blobs), np.uint8),
        offsets=offsets,
        identities=chips.identities,
        sources=chips.sources,
        paths=chips.paths,
        roles=chips.roles,
        bundle_version=np.array(chips.bundle_version),
    )
    print(f"{len(blobs)} chips, {out.stat().st_size / 1e6:.1f} MB → {out}")
    return out


def unpack(packed: Path, out: Path) -> Path:
    from training.data import ChipSet

    with np.load(packed) as z:
        data, offsets = z["jpeg"].tobytes(), z["offsets"]
        chips = np.stack(
            [np.asarray(Image.open(io.BytesIO(data[a:b])).convert("RGB")) for a, b in zip(offsets[:-1], offsets[1:])]
        )
        ChipSet(chips, z["identities"], z["sources"], z["paths"], z["roles"], str(z["bundle_version"])).save(out)
    return out


def run(grid: dict, epochs: int, out: Path, weights: Path, packed: Path = PACKED) -> dict:
    import torch

    from training.config import TrainConfig
    from training.sweep import sweep

    chips_file = unpack(packed, Path("/tmp/chips-from-jpeg.npz"))
    base = TrainConfig(epochs=epochs, weights=str(weights), device="cuda" if torch.cuda.is_available() else "cpu")
    started = time.time()
    # Sweeps never export, so the base bundle (not carried to the GPU machine) is not read.
    rows = sweep(
        base,
        grid,
        chips_file,
        Path("/tmp/sweep"),
        cache_dir=Path("/tmp/cache"),
        log=lambda m: print(m, flush=True),
        progress=False,
    )
    results = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor(),
        "torch": torch.__version__,
        "epochs": epochs,
        "chips": "JPEG q95 copies of the facedata chips",
        "seconds_total": round(time.time() - started, 1),
        "grid": grid,
        "runs": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    (out.parent / "sweep.md").write_text((Path("/tmp/sweep") / "sweep.md").read_text())
    print((Path("/tmp/sweep") / "sweep.md").read_text())
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("pack")
    r = sub.add_parser("run")
    r.add_argument("--grid", required=True)
    r.add_argument("--epochs", type=int, default=8)
    r.add_argument("--weights", type=Path, default=ROOT / ".devcarry" / "dlib_face_recognition_resnet_model_v1.dat")
    r.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "training_gpu.json")
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack()
    else:
        run(json.loads(args.grid), args.epochs, args.out, args.weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
