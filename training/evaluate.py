"""The seed's evaluation as a report: positive/negative cosine similarities, their KDE
plot and histogram, the accuracy-peak threshold, accuracy/precision/recall/F1, ROC/AUC,
and search-style retrieval numbers; JSON + markdown + PNG per run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model_factory import calibration
from model_factory.calibration import embed_transform

from .data import ChipSet


@torch.no_grad()
def embed(model: torch.nn.Module, chips: np.ndarray, device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Raw embeddings of (N, S, S, 3) uint8 chips, in eval mode."""
    model.eval()
    out = []
    for start in range(0, len(chips), batch_size):
        batch = torch.from_numpy(chips[start : start + batch_size]).permute(0, 3, 1, 2).float().to(device)
        out.append(model(batch).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def verification(vectors: np.ndarray, identities: Sequence[str], threshold: float | None = None) -> dict:
    """Every number of the seed's evaluation (threshold searched between the means unless given),
    with the similarity lists kept for the plots."""
    pos, neg = calibration.pair_similarities(vectors, identities)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("evaluation needs at least one positive and one negative pair")
    result = calibration.report(pos, neg, threshold)
    result.update(
        positive_std=float(np.std(pos)),
        negative_std=float(np.std(neg)),
        identities=len(set(identities)),
        faces=len(identities),
    )
    return {"metrics": result, "positives": pos, "negatives": neg}


def evaluate_model(model, chips: ChipSet, mean, anchor, device="cpu", thresholds: dict | None = None) -> dict:
    """Served vectors of the evaluation chips: all of them, and per source with 2+ identities."""
    vectors = embed_transform(embed(model, chips.chips, device), mean, anchor)
    thresholds = thresholds or {}
    groups = {"all": np.ones(len(chips), bool)}
    for source in sorted(set(chips.sources)):
        mask = chips.sources == source
        _, counts = np.unique(chips.identities[mask], return_counts=True)
        if len(counts) >= 2 and (counts >= 2).any():  # a source with pairs of both kinds
            groups[source] = mask
    out = {}
    for name, mask in groups.items():
        ids = list(chips.identities[mask])
        at_peak = verification(vectors[mask], ids)
        entry = {"at_accuracy_peak": at_peak["metrics"], "_pairs": (at_peak["positives"], at_peak["negatives"])}
        if "verification" in thresholds:
            entry["at_validation_threshold"] = verification(vectors[mask], ids, thresholds["verification"])["metrics"]
        if "search" in thresholds and (np.unique(ids, return_counts=True)[1] >= 3).any():
            entry["search"] = calibration.retrieval_report(vectors[mask], ids, thresholds["search"])
        out[name] = entry
    return out


def plot_similarities(positives, negatives, threshold: float, title: str, path: Path) -> None:
    """KDE curves over a histogram of the positive and negative similarities, with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import gaussian_kde

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    grid = np.linspace(-0.2, 1.0, 400)
    for values, label, colour in ((positives, "same person", "tab:green"), (negatives, "different people", "tab:red")):
        ax.hist(values, bins=50, range=(-0.2, 1.0), density=True, alpha=0.3, color=colour)
        if len(values) > 1 and np.std(values) > 0:
            ax.plot(grid, gaussian_kde(values)(grid), color=colour, label=f"{label} (n={len(values)})")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(out_dir: Path, results: dict[str, dict], context: dict) -> dict:
    """``results``: model label ("before"/"after") → evaluate_model output.  Writes report.json,
    report.md and one similarity plot per model and group; returns the JSON document."""
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {"context": context, "models": {}}
    for label, groups in results.items():
        document["models"][label] = {}
        for group, entry in groups.items():
            pos, neg = entry["_pairs"]
            plot = out_dir / f"similarity-{label}-{group}.png"
            plot_similarities(pos, neg, entry["at_accuracy_peak"]["threshold"], f"{label}: {group}", plot)
            document["models"][label][group] = {k: v for k, v in entry.items() if k != "_pairs"}
            document["models"][label][group]["plot"] = plot.name
    (out_dir / "report.json").write_text(json.dumps(document, indent=2))
    (out_dir / "report.md").write_text(markdown(document))
    return document


def markdown(document: dict) -> str:
    """An evaluation report as Markdown."""
    lines = [
        "# Face embedder evaluation",
        "",
        "Held-out identities (never trained on). "
        "`peak`: the seed's metric, threshold at the accuracy peak on this set; "
        "`val thr`: at the threshold fitted on the validation identities.",
        "",
        "| model | group | ids | faces | pos mean | neg mean | AUC | peak thr | peak acc | precision | recall "
        "| F1 | val thr acc | search P | search R | search mAP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, groups in document["models"].items():
        for group, entry in groups.items():
            m = entry["at_accuracy_peak"]
            v = entry.get("at_validation_threshold", {})
            s = entry.get("search", {})

            def fmt(d, k):
                return f"{d[k]:.4f}" if k in d else "–"

            lines.append(
                f"| {label} | {group} | {m['identities']} | {m['faces']} | {m['positive_mean']:.4f} | "
                f"{m['negative_mean']:.4f} | {m['auc']:.4f} | {m['threshold']:.4f} | {m['accuracy']:.4f} | "
                f"{m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {fmt(v, 'accuracy')} | "
                f"{fmt(s, 'precision')} | {fmt(s, 'recall')} | {fmt(s, 'map')} |"
            )
    lines += ["", "```json", json.dumps(document["context"], indent=2), "```", ""]
    return "\n".join(lines)
