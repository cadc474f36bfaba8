"""What every benchmark does at the end: write its results file and show it."""

import json
import statistics
from collections import Counter
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(name: str, results: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return path


def cpu_engine(bundle=None):
    """(facedata root, the built bundle (or ``bundle``) on CPU), or None, said on stderr, without facedata."""
    import sys

    from gpu_endpoint.bundle import DEFAULT_DIR
    from gpu_endpoint.engine import FaceEngine
    from model_factory.facedata import facedata_root

    root = facedata_root()
    if root is None:
        print("../shared/facedata is absent: nothing real to benchmark on", file=sys.stderr)
        return None
    return root, FaceEngine(bundle or DEFAULT_DIR, providers=["CPUExecutionProvider"])


def percentiles(samples) -> dict:
    """p50 and p95 of durations in seconds, in milliseconds."""
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 3),
    }


def majority(named: list):
    """The most frequent label; a tie goes to the label seen first, so a run never depends on
    Python's hash seed (``max(set(...))`` did: the same album judged two ways from run to run)."""
    return Counter(named).most_common(1)[0][0]
