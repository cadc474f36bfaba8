"""Search quality over every identity: two-fold cross-validation of the whole pipeline.

The served bundle is fitted on one half of the identities (calibration) and judged on the other
(held out): 28 held-out East-Asian identities, too few to tell whether the East-Asian goal is met.
Rebuilt with the halves swapped (``FACEDATA_SPLIT=swapped``: stock fusion, fine-tune, fused bundle,
all fitted on the served bundle's held-out identities), the same pipeline is judged on the other
half, so every identity is held out once. What this measures is the pipeline, not the served bundle:

    export FACEDATA_SPLIT=swapped
    .venv/bin/python -m model_factory.build_bundle --out .cache/swap/bundle-stock
    ./dev train fine-tune --data ../shared/facedata --run-dir .cache/swap/fine-tune --bundle .cache/swap/bundle-stock
    .venv/bin/python -m model_factory.build_bundle --dlib-from .cache/swap/fine-tune/bundle --flip \\
        --out .cache/swap/bundle
    unset FACEDATA_SPLIT
    .venv/bin/python -m benchmarks.cross_validated --swapped .cache/swap/bundle
        → benchmarks/results/cross_validated.json

Another pipeline (e.g. with faceres fine-tuned too) is judged the same way: build both its folds and
pass ``--bundle`` (its served-split bundle) and ``--swapped``, and ``--against`` the served pipeline's
swapped bundle for the paired differences from the served pipeline, key by key
→ ``cross_validated_<swapped version>.json``.

Each fold searches as ``benchmarks.search_quality`` does (one album of every photo, each photo of an
identity with ≥ 3 photos as the key, the bundle's own decisions); its held-out keys are pooled.
Per slice: precision, recall, F1 with 95 % intervals over identities, and each fold's figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import cpu_engine, write_results
from benchmarks.search_quality import EAST_ASIAN, Album, cached_album, normalised_levers
from gpu_endpoint.engine import FaceEngine
from model_factory import calibration
from model_factory.facedata import SWAPPED, identity_split


def held_out_rows(engine: FaceEngine, album: Album) -> list[dict]:
    """The served decisions' rows of the keys the bundle did not fit on, with their source."""
    swapped = engine.manifest.fitted_on_swapped_split
    splits = np.array([identity_split(i, swapped) for i in album.identities])
    album = Album(album.vectors, album.groups, album.sources, album.identities, splits, album.stats, album.group_stats)
    keys = np.nonzero(album.is_key)[0]
    rows = normalised_levers(album, engine.normalisation, rows=True)["served_rows"]
    return [dict(row, source=album.sources[k]) for row, k in zip(rows, keys) if not album.calibration[k]]


def summary(rows: list[dict], against: list[dict] | None = None) -> dict:
    """Mean precision, recall, F1 with intervals over identities; with ``against`` (the same keys
    under another pipeline), the paired differences from it too."""
    identities = [r["identity"] for r in rows]
    out = {"identities": len(set(identities)), "keys": len(rows)}
    if not rows:
        return out
    for metric in ("precision", "recall", "f1"):
        values = [r[metric] for r in rows]
        out[metric] = round(float(np.mean(values)), 4)
        out[f"{metric}_interval"] = calibration.identity_interval(values, identities)
        if against is not None:
            diff = [r[metric] - a[metric] for r, a in zip(rows, against, strict=True)]
            out[f"{metric}_vs_other"] = round(float(np.mean(diff)), 4)
            out[f"{metric}_vs_other_interval"] = calibration.identity_interval(diff, identities)
    return out


def sliced(rows: list[dict], against: list[dict] | None = None) -> dict:
    slices = {
        "east_asian": lambda r: r["source"] in EAST_ASIAN,
        **{source: (lambda r, s=source: r["source"] == s) for source in EAST_ASIAN},
        "rest": lambda r: r["source"] not in EAST_ASIAN,
        "all": lambda r: True,
    }
    out = {}
    for name, wanted in slices.items():
        mine = [r for r in rows if wanted(r)]
        theirs = None if against is None else [a for r, a in zip(rows, against, strict=True) if wanted(r)]
        out[name] = summary(mine, theirs)
    return out


def pipeline(bundle: Path | None, swapped: Path) -> dict | None:
    """{fold: (bundle version, held-out rows)} of one pipeline's two folds."""
    folds = {}
    for name, path in (("served", bundle), ("swapped", swapped)):
        loaded = cpu_engine(path)
        if loaded is None:
            return None
        root, engine = loaded
        folds[name] = (engine.version, held_out_rows(engine, cached_album(engine, root)))
    if folds["served"][0] == folds["swapped"][0] or SWAPPED not in folds["swapped"][0]:
        raise SystemExit(f"{swapped} must be a bundle built with FACEDATA_SPLIT=swapped")
    return folds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swapped", type=Path, required=True, help="the bundle built with FACEDATA_SPLIT=swapped")
    parser.add_argument("--bundle", type=Path, default=None, help="the other fold's bundle (default: the served one)")
    parser.add_argument(
        "--against", type=Path, default=None, help="with --bundle: the served pipeline's swapped bundle, to pair with"
    )
    args = parser.parse_args(argv)
    folds = pipeline(args.bundle, args.swapped)
    other = pipeline(None, args.against) if args.bundle and args.against else None
    if folds is None or (args.against and other is None):
        return 1
    rows = {name: fold[1] for name, fold in folds.items()}
    theirs = {name: fold[1] for name, fold in other.items()} if other else {name: None for name in folds}
    pooled_theirs = None if other is None else theirs["served"] + theirs["swapped"]
    results = {
        "bundles": {name: version for name, (version, _) in folds.items()},
        **({"against": {name: version for name, (version, _) in other.items()}} if other else {}),
        "pooled": sliced(rows["served"] + rows["swapped"], pooled_theirs),
        "folds": {name: sliced(rows[name], theirs[name]) for name in folds},
    }
    name = f"cross_validated_{folds['swapped'][0]}.json" if args.bundle else "cross_validated.json"
    write_results(name, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
