"""A small grid of runs like the seed's table (learning rate × optimiser × freezing × chip size):
each combination trains from the same chips, and the held-out results land in one table."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from gpu_endpoint.bundle import DEFAULT_DIR

from .config import TrainConfig
from .pipeline import DEFAULT_CACHE, fine_tune, load_chips


def combinations(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values."""
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def run_name(values: dict) -> str:
    """A run folder's name for one combination."""
    return ",".join(f"{k}={v}" for k, v in sorted(values.items())).replace("/", "_")


def sweep(
    base: TrainConfig,
    grid: dict[str, list],
    data: Path,
    out_dir: Path,
    base_bundle: Path = DEFAULT_DIR,
    cache_dir: Path = DEFAULT_CACHE,
    log=print,
    progress: bool = True,
    table_groups=("all", "kpop"),
) -> list[dict]:
    """Train and evaluate each combination of the grid; a row per run."""
    rows, chip_sets = [], {}
    for values in combinations(grid):
        cfg = base.with_overrides(f"{k}={json.dumps(v)}" for k, v in values.items())
        size = cfg.input_size or 0
        if (cfg.model, size) not in chip_sets:
            chip_sets[(cfg.model, size)] = load_chips(cfg, data, base_bundle, cache_dir, log)
        log(f"sweep run {run_name(values)}")
        document = fine_tune(
            cfg,
            data,
            out_dir / run_name(values),
            base_bundle,
            cache_dir,
            log,
            progress,
            export=False,
            chips=chip_sets[(cfg.model, size)],
        )
        row = dict(values)
        for label in ("before", "after"):
            for group, entry in document["models"][label].items():
                if group not in table_groups:
                    continue
                row[f"{label}.{group}.accuracy"] = entry["at_accuracy_peak"]["accuracy"]
                row[f"{label}.{group}.auc"] = entry["at_accuracy_peak"]["auc"]
        history = document["context"]["history"]
        row["chosen_epoch"] = document["context"]["chosen_epoch"]
        row["val_auc.start"] = history[0]["val_auc"]
        row["val_auc.best"] = max(h["val_auc"] for h in history)
        row["seconds_per_epoch"] = document["context"]["seconds_per_epoch"]
        rows.append(row)
        write_table(rows, out_dir)
    return rows


def _cell(column, value, grid_keys) -> str:
    if isinstance(value, float) and column not in grid_keys:
        return f"{value:.4f}"
    return str(value)


def write_table(rows: list[dict], out_dir: Path) -> None:
    """Write the sweep's rows as JSON and Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.json").write_text(json.dumps(rows, indent=2))
    columns = list(rows[0])
    grid_keys = {c for c in columns if "." not in c and c not in ("chosen_epoch", "seconds_per_epoch")}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c, row.get(c), grid_keys) for c in columns) + " |")
    (out_dir / "sweep.md").write_text("\n".join(lines) + "\n")
