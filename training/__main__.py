"""Fine-tune, evaluate, export and package the face embedder.

    python -m training fine-tune --data ../shared/facedata --run-dir runs/dlib-arcface [--set lr=1e-4 ...]
    python -m training sweep --data ../shared/facedata --out runs/sweep --grid '{"lr": [1e-4, 1e-3]}'
    python -m training chips --data DIR          (detect and align once; later runs read the cache)

``--data`` is ../shared/facedata (read through its manifest) or any folder per person
(``DIR/<name>/*.jpg``).  A run folder holds checkpoint.pt (a rerun resumes), best.pt,
history.json, report/ and bundle/ — publish it with
``python -m model_factory.deploy publish --bucket B --bundle RUN/bundle``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpu_endpoint.bundle import DEFAULT_DIR

from .config import TrainConfig
from .pipeline import DEFAULT_CACHE, fine_tune, load_chips
from .sweep import sweep


def _config(args) -> TrainConfig:
    cfg = TrainConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else TrainConfig()
    return cfg.with_overrides(args.set or [])


def main(argv=None) -> int:
    """``python -m training``."""
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fine-tune", "sweep", "chips"):
        p = sub.add_parser(name)
        p.add_argument("--data", type=Path, required=True)
        p.add_argument("--config", help="a JSON file of training settings (training/config.py)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting")
        p.add_argument("--bundle", type=Path, default=DEFAULT_DIR, help="the base bundle (detector, alignment)")
        p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
        if name == "fine-tune":
            p.add_argument("--run-dir", type=Path, required=True)
            p.add_argument("--no-export", action="store_true")
        if name == "sweep":
            p.add_argument("--out", type=Path, required=True)
            p.add_argument("--grid", required=True, help='JSON: {"setting": [values, ...], ...}')
    args = parser.parse_args(argv)
    try:
        cfg = _config(args)
        if args.command == "chips":
            load_chips(cfg, args.data, args.bundle, args.cache)
        elif args.command == "fine-tune":
            fine_tune(cfg, args.data, args.run_dir, args.bundle, args.cache, export=not args.no_export)
        else:
            rows = sweep(cfg, json.loads(args.grid), args.data, args.out, args.bundle, args.cache)
            print((args.out / "sweep.md").read_text() if rows else "empty grid")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
