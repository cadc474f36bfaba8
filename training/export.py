"""Fine-tuned weights → ONNX (dynamic batch, verified against torch on real chips) →
the endpoint's bundle format, with a new version and calibrated thresholds."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from gpu_endpoint.bundle import Document, FileEntry, Manifest, sha256

from .models import BASE_PART, Calibrated, Embedder

MAX_EXPORT_ERROR = 1e-4


def export_onnx(model: Embedder, mean, anchor: float, path: Path) -> Calibrated:
    """Write the model behind the bundle's output transform as ONNX; the served module."""
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
    base = Manifest.load(base_bundle)
    digest = sha256(embedder_onnx)
    # The fine-tuned model is served alone (the base's other parts were fused with the vectors of the
    # part it replaces); its chips are aligned like the base part training started from. Nothing the
    # base fitted on its own vectors comes along (cohort, grouping, its build key and sources).
    base_part = base.parts[BASE_PART[model.name]]
    scale = model.input_size / base_part["input_size"]
    output = "unit vector: L2-normalise([embedding - reference_mean, anchor]), inside the graph"
    embedder_files = {part["file"] for part in base.parts}
    files: dict[str, FileEntry] = {
        name: {"path": entry["path"]} for name, entry in base.files.items() if name not in embedder_files
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in files.values():
        shutil.copy2(base_bundle / entry["path"], out_dir / entry["path"])
    shutil.copy2(embedder_onnx, out_dir / "embedder.onnx")
    files["embedder"] = {"path": "embedder.onnx"}
    manifest = Manifest.create(
        version=f"{model.name}-ft.{digest[:10]}",
        builder="training.export/1",
        detector=base.detector,
        embedder={
            "name": f"{model.name} fine-tuned from {base.version}"
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
        },
        files=files,
    )
    sections: Document = {
        "calibration": {
            "threshold": round(thresholds["verification"], 4),
            "search_threshold": round(thresholds["search"], 4),
            "method": "verification: accuracy peak between the pair means on the validation identities; search: "
            "best mean retrieval F1 on the validation identities",
        },
        "training": training,
    }
    if (split := base.facedata_split) is not None:
        sections["facedata_split"] = split
    manifest.extended(sections).save(out_dir)
    return out_dir
