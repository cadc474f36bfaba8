"""One fine-tuning run end to end: chips → train → evaluate before/after → export → bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gpu_endpoint.bundle import DEFAULT_DIR, Manifest
from model_factory import calibration
from model_factory.calibration import embed_transform

from .config import TrainConfig
from .data import ROLES, ChipSet, load_samples, prepare_chips
from .evaluate import embed, evaluate_model, write_report
from .export import export_onnx, package_bundle, verify_onnx
from .models import BASE_PART, MODELS, build_model
from .train import fit_output, load_best, resolve_device, train

DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "training"


def calibrate(model, chips: ChipSet, device: str, centre: bool = True):
    """Mean and anchor from every non-evaluation face; thresholds from the validation identities."""
    mean, anchor = fit_output(embed(model, chips.chips[chips.roles != "evaluation"], device), centre)
    val = chips.role("validation")
    vectors = embed_transform(embed(model, val.chips, device), mean, anchor)
    ids = list(val.identities)
    pos, neg = calibration.pair_similarities(vectors, ids)
    verification = calibration.best_threshold(pos, neg)
    _, counts = np.unique(ids, return_counts=True)
    # Search calibration needs identities with 3+ photos; without them the verification threshold stands in.
    search = calibration.best_search_threshold(vectors, ids) if (counts >= 3).any() else verification
    return mean, anchor, {"verification": verification, "search": search}


def load_chips(cfg: TrainConfig, data: Path, base_bundle: Path, cache_dir: Path, log=print) -> ChipSet:
    """``data``: photos (see data.load_samples), or a chips file the ``chips`` command wrote
    (to train where the photos are not, e.g. on a GPU machine)."""
    size = cfg.input_size or MODELS[cfg.model]
    if Path(data).suffix == ".npz":
        chips = ChipSet.load(Path(data))
        if chips.chips.shape[1] != size:
            raise ValueError(f"{data} holds {chips.chips.shape[1]} px chips; this model takes {size}")
        return chips
    return prepare_chips(
        load_samples(data),
        base_bundle,
        size,
        cache_dir,
        cfg.validation_fraction,
        cfg.evaluation_fraction,
        log,
        part=BASE_PART[cfg.model],
    )


def fine_tune(
    cfg: TrainConfig,
    data: Path,
    run_dir: Path,
    base_bundle: Path = DEFAULT_DIR,
    cache_dir: Path = DEFAULT_CACHE,
    log=print,
    progress: bool = True,
    export: bool = True,
    chips: ChipSet | None = None,
) -> dict:
    """Returns the report document; writes under ``run_dir``: checkpoint.pt, best.pt,
    history.json, report/ (json, md, png) and, with ``export``, embedder.onnx and bundle/."""
    run_dir = Path(run_dir)
    chips = chips if chips is not None else load_chips(cfg, data, base_bundle, cache_dir, log)
    counts = {
        role: {"identities": len(set(chips.identities[chips.roles == role])), "faces": int((chips.roles == role).sum())}
        for role in ROLES
    }
    log(f"identities/faces per role: {counts}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    summary = train(cfg, chips, run_dir, log, progress)

    device = resolve_device(cfg.device)
    models = {
        "before": build_model(cfg.model, cfg.weights, cfg.input_size).to(device),
        "after": load_best(cfg, run_dir, device),
    }
    results, calibrations = {}, {}
    for label, model in models.items():
        mean, anchor, thresholds = calibrate(model, chips, device, cfg.centre)
        calibrations[label] = (mean, anchor, thresholds)
        results[label] = evaluate_model(model, chips.role("evaluation"), mean, anchor, device, thresholds)
    epoch_seconds = [h["seconds"] for h in summary["history"] if h["epoch"] > 0]
    context = {
        "data": str(data),
        "base_bundle": chips.bundle_version,
        "config": cfg.to_dict(),
        "roles": counts,
        "chosen_epoch": summary["chosen_epoch"],
        "device": summary["device"],
        "seconds_per_epoch": round(float(np.mean(epoch_seconds)), 2) if epoch_seconds else None,
        "history": summary["history"],
        "thresholds": {label: c[2] for label, c in calibrations.items()},
    }
    document = write_report(run_dir / "report", results, context)
    log(f"report: {run_dir / 'report' / 'report.md'}")

    if export:
        mean, anchor, thresholds = calibrations["after"]
        onnx_path = run_dir / "embedder.onnx"
        served = export_onnx(models["after"], mean, anchor, onnx_path)
        error = verify_onnx(served, onnx_path, chips.role("evaluation").chips[:32])
        training = {
            "base_bundle": chips.bundle_version,
            "config": cfg.to_dict(),
            "chosen_epoch": summary["chosen_epoch"],
            "export_max_abs_diff": error,
            "evaluation": {label: groups["all"]["at_accuracy_peak"] for label, groups in document["models"].items()},
        }
        bundle = package_bundle(
            base_bundle,
            onnx_path,
            run_dir / "bundle",
            model=models["after"],
            mean=mean,
            anchor=anchor,
            thresholds=thresholds,
            training=training,
        )
        document["bundle"] = str(bundle)
        log(f"bundle {Manifest.load(bundle).version} in {bundle} (ONNX vs torch max abs diff {error:.1e})")
    return document
