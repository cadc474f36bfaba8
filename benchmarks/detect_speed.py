"""Detection and detect + embed on CPU, this tree against an earlier revision, in one run.

    .venv/bin/python -m benchmarks.detect_speed --before REV [--out NAME]   → benchmarks/results/detect_speed.json

The machine is shared and noisy, so the two trees are measured in alternating worker processes
(``git archive REV`` unpacked next to this one; each worker imports ``gpu_endpoint`` from its
tree) and compared as ratios of medians.  Each tree also reports its detection recall on dlib's
hand-labelled group photos and how many tight crops (kpop, dlib_johns) it finds: a speed-up
counts only where those do not drop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES_MP = (0.3, 1.0, 4.0)
PHOTO = "people/deepface/Angelina_Jolie/img4.jpg"  # one face; resized to each size


def worker(bundle: str, facedata: str, repeat: int, quality: bool) -> dict:
    """Runs inside a worker process whose ``sys.path`` starts with the tree under test."""
    import numpy as np
    from PIL import Image

    from gpu_endpoint.engine import FaceEngine
    from model_factory.facedata import ground_truth_boxes, labelled_photos, match_detections

    engine = FaceEngine(bundle, providers=["CPUExecutionProvider"])
    root = Path(facedata)
    big = Image.open(root / PHOTO).convert("RGB")
    out: dict = {"timings_ms": {}}
    for mp in SIZES_MP:
        factor = (mp * 1e6 / (big.size[0] * big.size[1])) ** 0.5
        image = big.resize((round(big.size[0] * factor), round(big.size[1] * factor)), Image.Resampling.LANCZOS)
        calls = (
            ("detect", lambda image=image: engine.detect(image)),
            ("analyze", lambda image=image: engine.analyze([image])),
        )
        for name, call in calls:
            call()
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                call()
                times.append((time.perf_counter() - start) * 1000)
            out["timings_ms"][f"{mp}MP_{name}"] = times
    if quality:

        def load(path):
            return np.asarray(Image.open(path).convert("RGB"))

        hits = misses = false_pos = 0
        for path, boxes in ground_truth_boxes(root).items():
            faces = engine.detect(Image.fromarray(load(path)))
            tp, fn, fp = match_detections(boxes, [f.box for f in faces])
            hits, misses, false_pos = hits + tp, misses + fn, false_pos + fp
        out["group_recall"] = {"found": hits, "missed": misses, "false_positives": false_pos}
        for source in ("kpop", "dlib_johns"):
            photos = [p for p in labelled_photos(root) if p.source == source]
            found = sum(bool(engine.detect(Image.fromarray(load(p.path)))) for p in photos)
            out[f"tight_crops_{source}"] = {"found": found, "photos": len(photos)}
    return out


def unpack(revision: str, into: Path) -> Path:
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), revision], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def run_worker(tree: Path, bundle: Path, facedata: Path, repeat: int, quality: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    args = [sys.executable, str(Path(__file__).resolve()), "--worker", "--bundle", str(bundle)]
    args += ["--facedata", str(facedata), "--repeat", str(repeat)] + (["--quality"] if quality else [])
    done = subprocess.run(args, env=env, cwd=tree, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="the revision to compare against (e.g. HEAD~1, a commit)")
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--facedata", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=4, help="worker pairs, alternating")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per size per worker")
    parser.add_argument("--out", default="detect_speed.json", help="the results file's name")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quality", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(str(args.bundle), str(args.facedata), args.repeat, args.quality)))
        return 0

    sys.path.insert(0, str(ROOT))
    from benchmarks.common import write_results
    from gpu_endpoint.bundle import DEFAULT_DIR, Manifest
    from model_factory.facedata import facedata_root

    facedata = args.facedata or facedata_root()
    if facedata is None or not args.before:
        print("needs ../shared/facedata and --before REV", file=sys.stderr)
        return 2
    bundle = args.bundle or DEFAULT_DIR
    revision = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.before], check=True, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": unpack(revision, Path(tmp)), "after": ROOT}
        runs: dict = {name: [] for name in trees}
        for round_ in range(args.rounds):
            for name, tree in trees.items() if round_ % 2 == 0 else reversed(trees.items()):
                runs[name].append(run_worker(tree, bundle, facedata, args.repeat, quality=round_ == 0))
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "bundle": Manifest.load(bundle).version,
        "before": revision,
        "method": f"{args.rounds} worker processes per tree, alternating, {args.repeat} timed calls per size each; "
        "medians over all calls; one face per photo",
    }
    for name, worker_runs in runs.items():
        timings = {
            key: round(statistics.median(t for r in worker_runs for t in r["timings_ms"][key]), 1)
            for key in worker_runs[0]["timings_ms"]
        }
        results[name] = {"median_ms": timings, **{k: v for k, v in worker_runs[0].items() if k != "timings_ms"}}
    results["after_over_before"] = {
        key: round(results["after"]["median_ms"][key] / results["before"]["median_ms"][key], 3)
        for key in results["before"]["median_ms"]
    }
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
