"""Other ways to fit the search's decisions on the calibration identities, measured held out against
the served ones, on the album ``benchmarks.search_quality`` embeds (and caches):

    .venv/bin/python -m benchmarks.decision_fits   → benchmarks/results/decision_fits.json
    .venv/bin/python -m benchmarks.decision_fits --bundle DIR   → decision_fits_<bundle version>.json

Variants, each refitted here exactly as the bundle builder fits (normalised search, then query
expansion, on the album's calibration faces; the cohort their photos of ``COHORT_SOURCES``):
- ``refit``: the builder's own fit (it must reproduce the bundle's decisions: a check of this file);
- ``sources``: the normalised-search fit with every calibration source weighing the same
  (``calibration.fit_normalised_search(sources=…)``), not every key;
- ``dlib_weight_W``: the parts fused again with weight W on dlib (the builder uses 0.5), every
  decision refitted; ``calibration_f1`` is the fit's own objective, what a builder choosing W
  from the calibration identities alone would go by.

Per variant and held-out slice: precision, recall, F1 with 95 % intervals over identities, and the
paired difference from the served decisions (the same keys; intervals over identities). Nothing here
is served: a variant becomes the default only through the builder, if it wins (docs/search.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import cpu_engine, write_results
from benchmarks.search_quality import Album, cached_album, normalised_levers, slices
from chalicelib.shared.score_norm import cohort_stats
from gpu_endpoint.engine import fuse
from model_factory import calibration
from model_factory.build_bundle import COHORT_SOURCES

DLIB_WEIGHTS = (0.3, 0.4, 0.6, 0.7)
HELD_OUT = (
    "holdout_east_asian",
    "holdout_kpop",
    "holdout_asian_faces",
    "holdout_casia_v5",
    "holdout_rest",
    "holdout_all",
)


def refit(album: Album, by_source: bool = False) -> tuple[Album, dict]:
    """The album with statistics against a cohort of its calibration faces, and the decisions the
    builder would fit on them (``by_source``: the ``sources`` objective)."""
    cal = album.calibration
    vectors, labels = album.vectors[cal], album.identities[cal]
    in_cohort = np.isin(album.sources[cal], COHORT_SOURCES)
    fit = calibration.fit_normalised_search(
        vectors, labels, in_cohort, sources=album.sources[cal] if by_source else None
    )
    decided = [fit[k] for k in ("top_n", "raw_floor", "threshold")]
    norm = dict(
        top_n=fit["top_n"],
        raw_floor=fit["raw_floor"],
        threshold=fit["threshold"],
        calibration_f1=round(fit["f1"], 4),
        expansion=calibration.fit_query_expansion(vectors, labels, in_cohort, *decided),
    )
    cohort = vectors[in_cohort]
    stats = np.stack(cohort_stats(album.vectors, cohort, fit["top_n"]), axis=1)
    group_stats = np.stack(cohort_stats(album.groups, cohort, fit["top_n"]), axis=1)
    refitted = Album(album.vectors, album.groups, album.sources, album.identities, album.splits, stats, group_stats)
    return refitted, norm


def compared(album: Album, rows: list, served_rows: list) -> dict:
    """Held-out slices of ``rows`` with the paired difference from ``served_rows`` (same keys)."""
    keys = np.nonzero(album.is_key)[0]
    out = {}
    for name in HELD_OUT:
        mask = slices(album)[name][keys]
        mine = [r for r, m in zip(rows, mask) if m]
        theirs = [r for r, m in zip(served_rows, mask) if m]
        identities = [r["identity"] for r in mine]
        entry = {}
        for metric in ("precision", "recall", "f1"):
            diff = [a[metric] - b[metric] for a, b in zip(mine, theirs)]
            entry[metric] = round(float(np.mean([r[metric] for r in mine])), 4)
            entry[f"{metric}_vs_served"] = round(float(np.mean(diff)), 4)
            entry[f"{metric}_vs_served_interval"] = calibration.identity_interval(diff, identities)
        out[name] = entry
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="another bundle than the default one")
    args = parser.parse_args(argv)
    loaded = cpu_engine(args.bundle)
    if loaded is None:
        return 1
    root, engine = loaded
    album = cached_album(engine, root)
    served = normalised_levers(album, engine.normalisation, rows=True)
    served_rows = served["served_rows"]
    variants = {"refit": refit(album), "sources": refit(album, by_source=True)}
    if len(engine.parts) > 1:
        parts, group_parts = engine.split(album.vectors), engine.split(album.groups)
        for weight in DLIB_WEIGHTS:
            weights = [weight, 1 - weight]
            fused = Album(
                fuse(parts, weights), fuse(group_parts, weights), album.sources, album.identities, album.splits
            )
            variants[f"dlib_weight_{weight}"] = refit(fused)
    results = {
        "bundle": engine.version,
        "served": {
            "decisions": {k: engine.normalisation[k] for k in ("top_n", "raw_floor", "threshold", "expansion")},
            **compared(album, served_rows, served_rows),
        },
    }
    for name, (refitted, norm) in variants.items():
        rows = normalised_levers(refitted, norm, rows=True)["served_rows"]
        results[name] = {"decisions": norm, **compared(refitted, rows, served_rows)}
    write_results(f"decision_fits_{engine.version}.json" if args.bundle else "decision_fits.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
