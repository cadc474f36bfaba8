"""Fine-tuned weights → ONNX (dynamic batch, verified against torch on real chips) →
the endpoint's bundle format, with a new version and calibrated thresholds."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from gpu_endpoint.bundle import Manifest, sha256

from .models import BASE_PART, Calibrated, Embedder

MAX_EXPORT_ERROR = 1e-4


def export_onnx(model: Embedder, mean, anchor: float, path: Path) -> Calibrated:
    served = Calibrated(model.cpu().eval(), mean, anchor).eval()
    example = torch.zeros(2, 3, model.input_size, model.input_size)
    # The chip size is fixed, so what the tracer records as constants from it (faceres's SAME
    # padding) holds for every input the bundle gives the graph.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            served,
            (example,),
            str(path),
            input_names=["chips"],
            output_names=["embeddings"],
            dynamic_axes={"chips": {0: "batch"}, "embeddings": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return served


def verify_onnx(served: Calibrated, path: Path, chips: np.ndarray) -> float:
    """Largest absolute difference between ONNX Runtime and torch on these (N, S, S, 3) chips."""
    batch = chips.transpose(0, 3, 1, 2).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"chips": batch})[0]
    with torch.no_grad():
        want = served(torch.from_numpy(batch)).numpy()
    error = float(np.abs(got - want).max())
    if error > MAX_EXPORT_ERROR:
        raise RuntimeError(f"ONNX export differs from torch by {error:.2e} (limit {MAX_EXPORT_ERROR:.0e})")
    return error


def package_bundle(
    base_bundle: Path,
    embedder_onnx: Path,
    out_dir: Path,
    *,
    model: Embedder,
    mean,
    anchor: float,
    thresholds: dict[str, float],
    training: dict,
) -> Path:
    """A bundle like the base one (same detector) serving the fine-tuned embedder."""
    base = Manifest.load(base_bundle).document
    digest = sha256(embedder_onnx)
    manifest = json.loads(json.dumps(base))
    manifest["version"] = f"{model.name}-ft.{digest[:10]}"
    manifest["builder"] = "training.export/1"
    manifest.pop("build_key", None)
    manifest.pop("sources", None)
    # The cohort is made of the base embedder's vectors: meaningless for the new one.
    manifest.pop("score_normalisation", None)
    # The fine-tuned model is served alone (the base's other parts were fused with the vectors of the
    # part it replaces); its chips are aligned like the base part training started from.
    base_part = base["embedder"]["parts"][BASE_PART[model.name]]
    scale = model.input_size / base_part["input_size"]
    output = "unit vector: L2-normalise([embedding - reference_mean, anchor]), inside the graph"
    manifest["embedder"] = {
        "name": f"{model.name} fine-tuned from {base['version']}"
        if model.name != "facenet"
        else f"{model.name} fine-tuned",
        "embedding_dim": model.dim + 1,
        "metric": "cosine",
        "output": output,
        "parts": [
            {
                "name": f"{model.name} fine-tuned",
                "file": "embedder",
                "weight": 1.0,
                "input_size": model.input_size,
                "input": "aligned RGB chip 0..255, float32, NCHW",
                "alignment_template": [
                    [round(x * scale, 3), round(y * scale, 3)] for x, y in base_part["alignment_template"]
                ],
                "embedding_dim": model.dim + 1,
                "output": output,
                "reference_mean": [round(float(v), 7) for v in mean],
                "anchor": round(float(anchor), 6),
            }
        ],
    }
    manifest["calibration"] = {
        "threshold": round(thresholds["verification"], 4),
        "search_threshold": round(thresholds["search"], 4),
        "method": "verification: accuracy peak between the pair means on the validation identities; search: best "
        "mean retrieval F1 on the validation identities",
    }
    manifest["training"] = training
    out_dir.mkdir(parents=True, exist_ok=True)
    embedder_files = {part["file"] for part in base["embedder"]["parts"]}
    manifest["files"] = {name: entry for name, entry in base["files"].items() if name not in embedder_files}
    for entry in manifest["files"].values():
        shutil.copy2(base_bundle / entry["path"], out_dir / entry["path"])
    shutil.copy2(embedder_onnx, out_dir / "embedder.onnx")
    manifest["files"]["embedder"] = {"path": "embedder.onnx"}
    Manifest(manifest).save(out_dir)
    return out_dir
