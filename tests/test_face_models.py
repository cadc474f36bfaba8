"""The bundle's models against their originals, on real photos from ../shared/facedata."""

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from chalicelib.shared.images import decode_image
from model_factory import calibration
from model_factory.facedata import ground_truth_boxes, labelled_photos, match_detections
from tests.face_fixtures import FACEDATA, needs_facedata

pytestmark = [needs_facedata, pytest.mark.factory]


def load(path) -> Image.Image:
    return decode_image(path.read_bytes()).image


def load_small(path, side: int = 640) -> Image.Image:
    """The photo at most ``side`` pixels long: the comparisons below feed both pipelines the same
    pixels, and dlib's HOG detector on full-size photos is what made them slow (faces stay large)."""
    image = load(path)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


@pytest.fixture(scope="module")
def dlib_models():
    dlib = pytest.importorskip("dlib", reason="dlib-bin is the reference implementation")
    import face_recognition_models as frm

    return (
        dlib,
        dlib.face_recognition_model_v1(frm.face_recognition_model_location()),
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
    )


def test_converted_embedder_matches_dlib_on_the_same_chips(dlib_models):
    import face_recognition_models as frm
    import onnxruntime as ort

    from model_factory.facemodels.dlib_resnet import convert

    dlib, recognizer, detector, predictor = dlib_models
    session = ort.InferenceSession(
        convert(frm.face_recognition_model_location()).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    photos = [p for p in labelled_photos(FACEDATA) if p.source in ("deepface", "kpop", "faceapi_bbt")][::4]
    chips = []
    for photo in photos:
        image = np.asarray(load_small(photo.path))
        rects = detector(image, 1)
        if rects:
            chips.append(dlib.get_face_chip(image, predictor(image, rects[0]), size=150, padding=0.25))
    assert len(chips) >= 10
    ours = session.run(None, {"chips": np.stack(chips).transpose(0, 3, 1, 2).astype(np.float32)})[0]
    theirs = np.array([recognizer.compute_face_descriptor(chip) for chip in chips])
    assert np.abs(ours - theirs).max() <= 1e-4


def test_alignment_template_reproduces_dlibs_own_pipeline(engine, dlib_models):
    """Our detector + 5-point alignment + embedder against dlib's detector + predictor + chips."""
    import face_recognition_models as frm
    import onnxruntime as ort

    from model_factory.facemodels.dlib_resnet import convert

    dlib, recognizer, detector, predictor = dlib_models
    raw = ort.InferenceSession(
        convert(frm.face_recognition_model_location()).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    similarities = []
    for photo in [p for p in labelled_photos(FACEDATA) if p.source == "deepface"]:
        image = load_small(photo.path)
        array = np.asarray(image)
        rects = detector(array, 1)
        faces = engine.detect(image, max_faces=1)
        if len(rects) != 1 or not faces:
            continue
        theirs = np.array(recognizer.compute_face_descriptor(array, predictor(array, rects[0])))
        chip = engine.parts[0].chips(image, faces)
        ours = raw.run(None, {"chips": chip.transpose(0, 3, 1, 2).astype(np.float32)})[0][0]
        similarities.append(float(np.linalg.norm(ours - theirs)))
        if len(similarities) == 32:  # enough for the percentiles below; dlib's HOG detector is slow
            break
    assert len(similarities) >= 30
    # dlib's own same-person cut-off is a distance of 0.6; the same face through
    # the two pipelines must be far closer than that.
    assert np.median(similarities) < 0.2
    assert np.percentile(similarities, 90) < 0.3


def test_mtcnn_matches_facenet_pytorch(bundle_dir):
    """The same faces as facenet-pytorch's MTCNN; boxes agree to the pixel except
    where near-tied scores (ORT vs torch arithmetic, ~1e-6) make NMS keep a
    neighbouring candidate."""
    import onnxruntime as ort

    from gpu_endpoint.detector import MTCNN
    from training.facenet import facenet_mtcnn

    def session(name):
        return ort.InferenceSession(str(bundle_dir / f"{name}.onnx"), providers=["CPUExecutionProvider"])

    ours, reference = MTCNN(session("pnet"), session("rnet"), session("onet")), facenet_mtcnn()
    paths = sorted((FACEDATA / "groups").glob("*/*.jpg"))[:14]
    paths += [p.path for p in labelled_photos(FACEDATA) if p.source == "celeba"][:40:2]
    offsets, same_count, extra, compared = [], 0, 0, 0
    for path in paths:
        image = np.asarray(load(path))
        if image.shape[0] * image.shape[1] > 1_500_000:
            continue  # keeps the reference (torch on CPU) quick
        compared += 1
        found = ours.detect(image)
        ref_boxes, _ = reference.detect(Image.fromarray(image))
        ref_boxes = np.zeros((0, 4)) if ref_boxes is None else ref_boxes.astype(np.float64)
        same_count += len(found) == len(ref_boxes)
        extra += abs(len(found) - len(ref_boxes))
        for box in ref_boxes:
            if len(found):
                offsets.append(np.abs(found.boxes - box).max(axis=1).min())
    offsets = np.array(offsets)
    assert len(offsets) >= 40
    summary = (compared, same_count, extra, np.mean(offsets <= 1.0), np.median(offsets))
    assert same_count >= 0.9 * compared and extra <= 3, summary
    assert np.mean(offsets <= 1.0) >= 0.9, summary
    assert np.median(offsets) < 0.01, summary


def test_detection_recall_on_dlibs_ground_truth(engine):
    truth = ground_truth_boxes(FACEDATA)
    assert sum(len(v) for v in truth.values()) == 43
    hits = misses = false_pos = 0
    for path, boxes in truth.items():
        faces = engine.detect(load(path))
        tp, fn, fp = match_detections(boxes, [f.box for f in faces])
        hits, misses, false_pos = hits + tp, misses + fn, false_pos + fp
    recall = hits / (hits + misses)
    assert recall >= 0.9, (hits, misses, false_pos)
    assert false_pos <= 5


@pytest.mark.parametrize("source", ["kpop", "dlib_johns"])
def test_tight_crops_are_found(engine, source):
    """Profile pictures that are all face: found thanks to the padded retry."""
    photos = [p for p in labelled_photos(FACEDATA) if p.source == source][::3]
    found = sum(bool(engine.detect(load(p.path))) for p in photos)
    assert found >= 0.95 * len(photos)


@pytest.mark.parametrize(
    "which, first_part, flip",
    [
        ("bundle_dir", "dlib-resnet fine-tuned", True),
        ("stock_bundle_dir", "dlib_face_recognition_resnet_model_v1", False),
    ],
)
def test_manifest_is_complete(which, first_part, flip, request):
    bundle_dir = request.getfixturevalue(which)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    embedder = manifest["embedder"]
    assert embedder["metric"] == "cosine" and [p["name"] for p in embedder["parts"]] == [first_part, "hse_faceres"]
    assert embedder["embedding_dim"] == sum(p["embedding_dim"] for p in embedder["parts"]) == 129 + 1024
    assert sum(p["weight"] for p in embedder["parts"]) == pytest.approx(1.0)
    for part in embedder["parts"]:
        assert part.get("test_time_flip", False) is flip
        assert len(part["alignment_template"]) == 5 and part["file"] in manifest["files"]
        assert part["licence"] and part["provenance"]
    cal = manifest["calibration"]
    for split in ("calibration", "holdout"):
        for key in ("threshold", "accuracy", "precision", "recall", "f1", "auc"):
            assert 0 <= cal[split][key] <= 1
    assert cal["holdout"]["auc"] > 0.95
    for entry in manifest["files"].values():
        assert len(entry["sha256"]) == 64 and (bundle_dir / entry["path"]).exists()
    assert all(len(v) == 64 for src in manifest["sources"].values() for v in src["files"].values())
    norm = manifest["score_normalisation"]
    cohort = np.load(bundle_dir / norm["cohort"]["path"])
    assert cohort.shape == (norm["cohort"]["faces"], embedder["embedding_dim"]) and norm["top_n"] <= len(cohort)
    assert {"kpop", "asian_faces", "casia_v5"} <= set(norm["cohort"]["sources"])  # East-Asian faces in the cohort
    assert 0.5 <= norm["raw_floor"] < 1 and norm["threshold"] > 0
    expansion = norm["expansion"]  # fitted by the rule of calibration.fit_query_expansion, recorded
    if expansion is not None:
        assert expansion["min_score"] >= norm["threshold"]
        for with_it, without in zip(expansion["folds"], expansion["folds_without"], strict=True):
            assert with_it["precision"] >= without["precision"] - calibration.EXPANSION_PRECISION_SLACK
        assert expansion["worse_fold_f1"] > min(f["f1"] for f in expansion["folds_without"])


def test_the_engine_gives_each_face_its_cohort_statistics(engine, bundle_dir):
    from chalicelib.shared.score_norm import cohort_stats

    image = load(FACEDATA / "people/deepface/Angelina_Jolie/img11.jpg")
    (face,) = engine.analyze([image], max_faces=1)[0]
    cohort = np.load(bundle_dir / engine.normalisation["cohort"]["path"])
    mean, std = cohort_stats(face.embedding[None, :], cohort, engine.normalisation["top_n"])
    assert face.cohort == pytest.approx((mean[0], std[0]))
    assert set(face.to_json()) >= {"cohort_mean", "cohort_std"}


def test_embeddings_are_unit_vectors_that_separate_people(engine):
    photos, per_identity = [], Counter()
    for photo in labelled_photos(FACEDATA):  # three photos of each of the 13 people are enough
        if photo.source == "deepface" and per_identity[photo.identity] < 3:
            per_identity[photo.identity] += 1
            photos.append(photo)
    vectors, labels = [], []
    for photo in photos:
        image = load_small(photo.path)
        faces = engine.analyze([image], max_faces=1)[0]
        if faces:
            vectors.append(faces[0].embedding)
            labels.append(photo.identity)
    vectors = np.array(vectors)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    same = np.equal.outer(labels, labels) & ~np.eye(len(labels), dtype=bool)
    different = ~np.equal.outer(labels, labels)
    assert sims[same].mean() > engine.threshold > sims[different].mean()


def test_calibrated_graph_computes_the_documented_transform(stock_bundle_dir):
    """The stock bundle's dlib part = normalise([dlib descriptor - mean, anchor]), inside the graph."""
    import face_recognition_models as frm
    import onnxruntime as ort

    from gpu_endpoint.engine import FaceEngine
    from model_factory.calibration import embed_transform
    from model_factory.facemodels.dlib_resnet import convert

    engine = FaceEngine(stock_bundle_dir, providers=["CPUExecutionProvider"])
    manifest = engine.manifest.parts[0]
    raw = ort.InferenceSession(
        convert(frm.face_recognition_model_location()).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    chips = np.random.default_rng(3).integers(0, 255, (5, 150, 150, 3)).astype(np.uint8)
    expected = embed_transform(
        raw.run(None, {"chips": chips.transpose(0, 3, 1, 2).astype(np.float32)})[0],
        np.array(manifest["reference_mean"], np.float32),
        manifest["anchor"],
    )
    np.testing.assert_allclose(engine.parts[0].embed(chips, 4), expected, atol=1e-5)


def test_served_embedding_fuses_the_parts_as_declared(engine):
    """Concatenated unit vectors times √weight: a unit vector whose cosine is the weighted mean of
    the parts' cosines; ``split`` gives each part back."""
    from gpu_endpoint.engine import Face

    vectors = []
    for path in ("people/deepface/Angelina_Jolie/img11.jpg", "people/deepface/Angelina_Jolie/img2.jpg"):
        image = load(FACEDATA / path)
        (face,) = engine.detect(image, max_faces=1)
        parts = [part.embed(part.chips(image, [face]), 1) for part in engine.parts]
        for out in parts:
            np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
        fused = engine.embed(image, [Face(face.box, face.score, face.landmarks)])
        np.testing.assert_allclose(fused, engine.fuse(parts), atol=1e-6)
        for got, want in zip(engine.split(fused), parts):
            np.testing.assert_allclose(got, want, atol=1e-5)
        vectors.append((fused[0], [p[0] for p in parts]))
    (a, a_parts), (b, b_parts) = vectors
    weighted = sum(part.weight * float(x @ y) for part, x, y in zip(engine.parts, a_parts, b_parts))
    assert float(a @ b) == pytest.approx(weighted, abs=1e-5)


def test_each_part_embeds_a_face_and_its_mirror_image(engine):
    """Test-time flip: the normalised sum of the graph's vectors for the chip and its mirror image,
    so a face and its mirror image get the same embedding."""
    image = load(FACEDATA / "people/deepface/Angelina_Jolie/img11.jpg")
    (face,) = engine.detect(image, max_faces=1)
    for part in engine.parts:
        assert part.flip
        chips = part.chips(image, [face])
        both = part.run_graph(chips, 1) + part.run_graph(chips[:, :, ::-1], 1)
        np.testing.assert_allclose(part.embed(chips, 1), both / np.linalg.norm(both), atol=1e-6)
        np.testing.assert_allclose(part.embed(chips[:, :, ::-1], 1), part.embed(chips, 1), atol=1e-5)
        assert (
            float(part.run_graph(chips, 1)[0] @ part.run_graph(chips[:, :, ::-1], 1)[0]) < 0.99
        )  # the mirror adds a view


def test_test_time_flip_needs_parts_that_end_in_unit_vectors(tmp_path):
    from gpu_endpoint.bundle import BundleError
    from model_factory.build_bundle import build

    with pytest.raises(BundleError, match="unit vectors"):
        build(tmp_path / "bundle", FACEDATA, flip=True)


def test_the_swapped_split_trades_the_halves_and_is_never_built_as_the_default(monkeypatch):
    """``FACEDATA_SPLIT=swapped`` (the second fold of ``benchmarks.cross_validated``) makes every
    calibration identity held out and the other way round, and a bundle fitted so cannot take the
    served bundle's place."""
    from gpu_endpoint.bundle import DEFAULT_DIR, BundleError
    from model_factory.build_bundle import STOCK_DIR, build
    from model_factory.facedata import SPLIT_ENV, SWAPPED

    photos = labelled_photos(FACEDATA)
    served = [p.split for p in photos]
    monkeypatch.setenv(SPLIT_ENV, SWAPPED)
    swapped = [p.split for p in photos]
    assert set(served) == {"calibration", "holdout"}
    assert all(a != b for a, b in zip(served, swapped))
    for place in (DEFAULT_DIR, STOCK_DIR):
        with pytest.raises(BundleError, match="never the default"):
            build(place, FACEDATA)
    monkeypatch.setenv(SPLIT_ENV, "shuffled")
    with pytest.raises(ValueError, match=SPLIT_ENV):
        assert photos[0].split
