"""Training pipeline on tiny real data: a few identities from ../shared/facedata, few steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.face_fixtures import FACEDATA, needs_facedata
from training.augment import AugmentConfig, augment
from training.config import TrainConfig
from training.data import assign_roles, load_samples
from training.evaluate import verification

pytestmark = [needs_facedata, pytest.mark.factory]

METRICS = (
    "threshold",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "auc",
    "positive_mean",
    "negative_mean",
    "positive_pairs",
    "negative_pairs",
)


def tiny_config(**overrides) -> TrainConfig:
    values = dict(
        epochs=1, batch_size=8, per_identity=2, max_steps_per_epoch=2, validation_fraction=0.25, evaluation_fraction=0.4
    )
    values.update(overrides)
    return TrainConfig.from_dict(values)


def tiny_fine_tune_args(tiny_data, run_dir, bundle_dir, cache_dir, *settings) -> list:
    """``python -m training fine-tune`` on the tiny set: one short epoch."""
    args = ["fine-tune", "--data", str(tiny_data), "--run-dir", str(run_dir), "--bundle", str(bundle_dir)]
    args += ["--cache", str(cache_dir)]
    for setting in (
        "epochs=1",
        "max_steps_per_epoch=2",
        "batch_size=8",
        "validation_fraction=0.25",
        "per_identity=2",
        *settings,
    ):
        args += ["--set", setting]
    return args


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """A folder per person (links into ../shared/facedata): 5 dlib 'johns' and 4 kpop idols, 6 photos each."""
    root = tmp_path_factory.mktemp("people")
    for source, names in (("dlib_johns", None), ("kpop", 4)):
        people = sorted((FACEDATA / "people" / source).iterdir())[:names]
        for person in people:
            (root / person.name).mkdir()
            for photo in sorted(person.iterdir())[:6]:
                (root / person.name / photo.name).symlink_to(photo)
    return root


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("chip-cache")


@pytest.fixture(scope="module")
def tiny_chips(tiny_data, bundle_dir, cache_dir):
    from training.pipeline import load_chips

    return load_chips(tiny_config(), tiny_data, bundle_dir, cache_dir, log=lambda m: None)


def test_identities_never_straddle_roles_and_every_source_fills_every_role():
    by_source = {"celeba": [f"c{i}" for i in range(20)], "kpop": [f"k{i}" for i in range(8)], "solo": ["s0"]}
    roles = assign_roles(by_source, 0.15, 0.4)
    assert assign_roles(by_source, 0.15, 0.4) == roles  # stable
    for source in ("celeba", "kpop"):
        got = {roles[i] for i in by_source[source]}
        assert got == {"train", "validation", "evaluation"}, (source, got)
    assert sum(roles[i] == "evaluation" for i in by_source["kpop"]) == 3


@needs_facedata
def test_facedata_evaluation_identities_are_exactly_the_bundles_held_out_ones():
    """Nothing fitted by training sees an identity the search benchmarks report as held out."""
    from model_factory.facedata import labelled_photos
    from training.data import sample_roles

    samples = load_samples(FACEDATA)
    roles = sample_roles(samples, 0.15, 0.4)
    bundle_split = {p.identity: p.split for p in labelled_photos(FACEDATA)}
    for s in samples:
        assert (roles[s.identity] == "evaluation") == (bundle_split[s.identity] == "holdout")
    east_asian = {s.identity for s in samples if s.source in ("kpop", "asian_faces", "casia_v5")}
    assert {roles[i] for i in east_asian} == {"train", "validation", "evaluation"}


def test_folder_per_person_and_bad_folders(tiny_data, tmp_path):
    samples = load_samples(tiny_data)
    assert len(samples) == 9 * 6 and len({s.identity for s in samples}) == 9
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no photos"):
        load_samples(tmp_path)


def test_chips_come_from_the_serving_engine_and_are_cached(tiny_chips, tiny_data, bundle_dir, cache_dir, monkeypatch):
    assert tiny_chips.chips.shape[1:] == (150, 150, 3) and tiny_chips.chips.dtype == np.uint8
    assert len(tiny_chips) >= 50  # the odd photo may have no detectable face
    assert set(tiny_chips.roles) == {"train", "validation", "evaluation"}
    for identity in set(tiny_chips.identities):
        assert len(set(tiny_chips.roles[tiny_chips.identities == identity])) == 1

    import gpu_endpoint.engine
    from training.pipeline import load_chips

    monkeypatch.setattr(gpu_endpoint.engine, "FaceEngine", None)  # a cache hit never builds an engine
    again = load_chips(tiny_config(), tiny_data, bundle_dir, cache_dir, log=lambda m: None)
    assert np.array_equal(again.chips, tiny_chips.chips) and list(again.roles) == list(tiny_chips.roles)


def test_augmentation_is_seeded_and_keeps_the_range():
    batch = torch.rand(4, 3, 150, 150) * 255
    a = augment(batch, AugmentConfig(), torch.Generator().manual_seed(1))
    b = augment(batch, AugmentConfig(), torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == batch.shape
    assert float(a.min()) >= 0 and float(a.max()) <= 255 and not torch.equal(a, batch)
    only_flip = AugmentConfig(brightness=0, contrast=0, saturation=0, rotate_degrees=0, scale=0, shift=0)
    flipped = augment(batch, only_flip, torch.Generator().manual_seed(3))
    for original, out in zip(batch, flipped):
        assert torch.allclose(out, original, atol=0.01) or torch.allclose(out, original.flip(-1), atol=0.01)


def test_settings_overrides_and_errors():
    cfg = TrainConfig().with_overrides(["lr=0.001", "optimizer=adam", "augmentation.flip=false", "input_size=160"])
    assert (cfg.lr, cfg.optimizer, cfg.augmentation.flip, cfg.input_size) == (0.001, "adam", False, 160)
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig().with_overrides(["learning_rate=1"])
    with pytest.raises(ValueError, match="loss"):
        TrainConfig().with_overrides(["loss=softmax"])


def test_verification_report_numbers():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    vectors = np.repeat(centres, 5, axis=0) + 0.05 * rng.normal(size=(20, 16))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [str(i) for i in np.repeat(np.arange(4), 5)]
    m = verification(vectors, ids)["metrics"]
    assert m["auc"] == 1.0 and m["accuracy"] == 1.0 and m["positive_mean"] > 0.9 > m["negative_mean"]
    assert m["positive_pairs"] == 4 * 10 == m["negative_pairs"]
    with pytest.raises(ValueError, match="positive"):
        verification(vectors[:4], ["a", "b", "c", "d"])


def test_arcface_fine_tuning_lowers_the_loss(tiny_chips, tmp_path):
    from training.train import train

    cfg = tiny_config(epochs=4, max_steps_per_epoch=None, augment=False)
    summary = train(cfg, tiny_chips, tmp_path, log=lambda m: None, progress=False)
    losses = [h["train_loss"] for h in summary["history"] if h["epoch"]]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
    assert summary["history"][0]["epoch"] == 0 and 0 <= summary["chosen_epoch"] <= 4


def test_a_resumed_run_equals_an_uninterrupted_one(tiny_chips, tmp_path):
    from training.train import train

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(tiny_config(epochs=2), tiny_chips, straight, log=lambda m: None, progress=False)
    train(tiny_config(epochs=1), tiny_chips, resumed, log=lambda m: None, progress=False)
    messages = []
    train(tiny_config(epochs=2), tiny_chips, resumed, log=messages.append, progress=False)
    assert any("resuming after epoch 1" in m for m in messages)
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(resumed / "checkpoint.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    with pytest.raises(ValueError, match="other settings"):
        train(tiny_config(epochs=3, lr=0.5), tiny_chips, resumed, log=lambda m: None, progress=False)


def test_facenet_with_triplet_loss_trains(tiny_data, bundle_dir, cache_dir, tmp_path):
    from training.pipeline import load_chips
    from training.train import train

    cfg = tiny_config(model="facenet", loss="arcface+triplet", optimizer="adam", freeze_fraction=0.5)
    chips = load_chips(cfg, tiny_data, bundle_dir, cache_dir, log=lambda m: None)
    assert chips.chips.shape[1] == 160
    summary = train(cfg, chips, tmp_path, log=lambda m: None, progress=False)
    assert np.isfinite(summary["history"][1]["train_loss"]) and summary["frozen_tensors"] > 0


def _check_report(document, run_dir: Path):
    for label in ("before", "after"):
        for group in ("all",):
            entry = document["models"][label][group]
            assert all(k in entry["at_accuracy_peak"] for k in METRICS)
            assert "accuracy" in entry["at_validation_threshold"] and "map" in entry["search"]
            png = run_dir / "report" / entry["plot"]
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (run_dir / "report" / "report.md").read_text()
    assert "| before | all |" in text and "| after | all |" in text
    assert document["context"]["seconds_per_epoch"] is not None


def test_fine_tune_exports_a_bundle_the_endpoint_serves(tiny_data, bundle_dir, cache_dir, tmp_path):
    from chalicelib.shared.images import decode_image
    from gpu_endpoint.engine import FaceEngine
    from training.__main__ import main
    from training.models import Calibrated
    from training.train import load_best

    run_dir = tmp_path / "run"
    assert main(tiny_fine_tune_args(tiny_data, run_dir, bundle_dir, cache_dir, "lr=0.00001")) == 0
    document = json.loads((run_dir / "report" / "report.json").read_text())
    _check_report(document, run_dir)

    manifest = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    base = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["version"].startswith("dlib-resnet-ft.") and manifest["version"] != base["version"]
    assert manifest["training"]["export_max_abs_diff"] <= 1e-4
    assert 0 < manifest["calibration"]["threshold"] < 1 and 0 < manifest["calibration"]["search_threshold"] < 1

    # The endpoint's engine loads the bundle; its embeddings are the fine-tuned torch model's.
    engine = FaceEngine(run_dir / "bundle", providers=["CPUExecutionProvider"])
    person = sorted((FACEDATA / "people" / "kpop").iterdir())[0]
    image = decode_image(sorted(person.iterdir())[0].read_bytes()).image
    faces = engine.analyze([image])[0]
    assert faces and faces[0].embedding.shape == (129,)
    cfg = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    part = manifest["embedder"]["parts"][0]
    assert [p["file"] for p in manifest["embedder"]["parts"]] == ["embedder"]  # served alone
    served = Calibrated(load_best(cfg, run_dir), part["reference_mean"], part["anchor"])
    chips = engine.parts[0].chips(image, faces[:1])
    with torch.no_grad():
        want = served(torch.from_numpy(chips.transpose(0, 3, 1, 2).astype(np.float32))).numpy()[0]
    assert np.abs(faces[0].embedding - want).max() <= 1e-4


def test_bad_data_folder_is_a_clear_error(tmp_path, capsys):
    from training.__main__ import main

    assert main(["fine-tune", "--data", str(tmp_path / "missing"), "--run-dir", str(tmp_path / "run")]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_sagemaker_entry_point_writes_the_bundle_as_the_model(tiny_data, bundle_dir, tmp_path, monkeypatch):
    from model_factory.deploy import publish
    from training import sagemaker_entry

    model_dir, output_dir = tmp_path / "model", tmp_path / "output"
    monkeypatch.setenv("SM_CHANNEL_TRAINING", str(tiny_data))
    monkeypatch.setenv("SM_CHANNEL_BUNDLE", str(bundle_dir))
    monkeypatch.setenv("SM_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("SM_OUTPUT_DATA_DIR", str(output_dir))
    monkeypatch.setenv("MEMSTUDIO_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv(
        "SM_HPS",
        json.dumps(
            {"epochs": 1, "max_steps_per_epoch": 1, "batch_size": 8, "validation_fraction": 0.25, "per_identity": 2}
        ),
    )
    assert sagemaker_entry.main() == 0
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert {p.name for p in model_dir.iterdir()} >= {"manifest.json", "embedder.onnx", "pnet.onnx", "onet.onnx"}
    assert (output_dir / "report" / "report.json").exists()

    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="models")
        url = publish(s3, "models", model_dir)
        assert url == f"s3://models/models/{manifest['version']}/model.tar.gz"


@pytest.mark.slow
def test_sweep_writes_a_results_table(tiny_chips, tiny_data, bundle_dir, cache_dir, tmp_path):
    from training.sweep import sweep

    rows = sweep(
        tiny_config(max_steps_per_epoch=1),
        {"lr": [1e-4, 1e-3], "optimizer": ["sgd"]},
        tiny_data,
        tmp_path,
        bundle_dir,
        cache_dir,
        log=lambda m: None,
        progress=False,
    )
    assert [r["lr"] for r in rows] == [1e-4, 1e-3]
    table = (tmp_path / "sweep.md").read_text().splitlines()
    assert len(table) == 4 and "after.all.auc" in table[0]
    assert all(0 <= r["after.all.auc"] <= 1 for r in rows)


def tiny_facedata(tiny_data, root: Path) -> Path:
    """The tiny set in facedata's manifest format (the photos are read where they are)."""
    root.mkdir()
    rows = ["source\tidentity\tpath\tkind"] + [
        f"kpop\t{person.name}\t{photo.resolve()}\tsingle"
        for person in sorted(tiny_data.iterdir())
        for photo in sorted(person.iterdir())
    ]
    (root / "manifest.tsv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def dlib_run(tiny_data, bundle_dir, cache_dir, tmp_path_factory):
    """A short fine-tuning run of dlib's ResNet on the tiny set."""
    from training.__main__ import main

    run_dir = tmp_path_factory.mktemp("dlib-run")
    assert main(tiny_fine_tune_args(tiny_data, run_dir, bundle_dir, cache_dir)) == 0
    return run_dir


@pytest.mark.slow
def test_a_fine_tuned_embedder_is_fused_with_faceres_by_the_bundle_factory(tiny_data, bundle_dir, dlib_run, tmp_path):
    """``build_bundle --dlib-from RUN/bundle``: the fine-tuned graph replaces stock dlib as the first
    part, faceres stays, and the fused bundle is calibrated (thresholds, cohort) on the facedata."""
    from chalicelib.shared.images import decode_image
    from gpu_endpoint.bundle import sha256
    from gpu_endpoint.engine import FaceEngine
    from model_factory.build_bundle import build

    run_dir = dlib_run
    facedata = tiny_facedata(tiny_data, tmp_path / "facedata")

    fused = build(tmp_path / "bundle", facedata, log=lambda m: None, dlib_from=run_dir / "bundle")
    manifest = json.loads((fused / "manifest.json").read_text())
    assert manifest["version"].startswith("dlib-ft-faceres-v1.")
    assert [p["file"] for p in manifest["embedder"]["parts"]] == ["embedder", "embedder_faceres"]
    assert sha256(fused / "embedder.onnx") == sha256(run_dir / "bundle" / "embedder.onnx")
    assert (
        manifest["embedder"]["parts"][0]["training"]["base_bundle"]
        == json.loads((bundle_dir / "manifest.json").read_text())["version"]
    )
    assert manifest["score_normalisation"]["cohort"]["faces"] > 0

    engine = FaceEngine(fused, providers=["CPUExecutionProvider"])
    fine_tuned = FaceEngine(run_dir / "bundle", providers=["CPUExecutionProvider"])
    image = decode_image(next(next(tiny_data.iterdir()).iterdir()).read_bytes()).image
    (face,) = engine.analyze([image], max_faces=1)[0]
    alone = fine_tuned.embed(image, [face])
    np.testing.assert_allclose(engine.split(face.embedding[None, :])[0], alone, atol=1e-5)


@pytest.mark.slow
def test_a_fine_tuned_faceres_takes_the_place_of_stock_faceres_in_the_fusion(
    tiny_data, bundle_dir, cache_dir, dlib_run, tmp_path
):
    """``--set model=faceres``: chips aligned like the base bundle's faceres part, an exported
    faceres bundle, and ``build_bundle --dlib-from … --faceres-from …`` serving both fine-tuned graphs."""
    from chalicelib.shared.images import decode_image
    from gpu_endpoint.bundle import sha256
    from gpu_endpoint.engine import FaceEngine
    from model_factory.build_bundle import build
    from training.__main__ import main

    run_dir = tmp_path / "faceres-run"
    assert main(tiny_fine_tune_args(tiny_data, run_dir, bundle_dir, cache_dir, "model=faceres")) == 0
    tuned = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    base_part = json.loads((bundle_dir / "manifest.json").read_text())["embedder"]["parts"][1]
    (part,) = tuned["embedder"]["parts"]
    assert tuned["version"].startswith("faceres-ft.") and part["embedding_dim"] == 1025
    assert part["input_size"] == 224 and part["alignment_template"] == base_part["alignment_template"]

    facedata = tiny_facedata(tiny_data, tmp_path / "facedata")
    both = {"dlib_from": dlib_run / "bundle", "faceres_from": run_dir / "bundle"}
    fused = build(tmp_path / "bundle", facedata, log=lambda m: None, **both)
    manifest = json.loads((fused / "manifest.json").read_text())
    assert manifest["version"].startswith("dlib-ft-faceres-ft-v1.")
    assert sha256(fused / "embedder_faceres.onnx") == sha256(run_dir / "bundle" / "embedder.onnx")
    second = manifest["embedder"]["parts"][1]
    assert second["file"] == "embedder_faceres" and second["training"] == tuned["training"]
    assert "Apache-2.0" in second["licence"] and "fine-tuned" in second["provenance"]

    engine = FaceEngine(fused, providers=["CPUExecutionProvider"])
    alone = FaceEngine(run_dir / "bundle", providers=["CPUExecutionProvider"])
    image = decode_image(next(next(tiny_data.iterdir()).iterdir()).read_bytes()).image
    (face,) = engine.analyze([image], max_faces=1)[0]
    assert face.embedding.shape == (129 + 1025,)
    np.testing.assert_allclose(engine.split(face.embedding[None, :])[1], alone.embed(image, [face]), atol=1e-5)


def test_an_uncentred_output_is_the_plain_unit_embedding(tiny_chips):
    """``centre=false``: what training fits on and the export serves is the unit embedding (and a 0)."""
    from training.evaluate import embed
    from training.models import Calibrated, build_model
    from training.train import fit_output

    model = build_model("dlib-resnet").eval()
    raw = embed(model, tiny_chips.chips[:8], "cpu")
    mean, anchor = fit_output(raw, centre=False)
    with torch.no_grad():
        served = Calibrated(model, mean, anchor)(torch.from_numpy(tiny_chips.chips[:8]).permute(0, 3, 1, 2).float())
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(served.numpy(), np.hstack([unit, np.zeros((8, 1))]), atol=1e-5)
    centred_mean, centred_anchor = fit_output(raw)  # the default: dlib's fitted transform
    assert centred_anchor > 0 and np.abs(centred_mean).max() > 0


def test_the_faceres_twin_computes_what_the_converted_graph_computes_on_real_faces(stock_bundle_dir, tiny_chips):
    """training's faceres is built from the factory's ONNX conversion: same vectors on real chips."""
    import onnxruntime as ort

    from training.models import build_model

    model = build_model("faceres").eval()
    graph = stock_bundle_dir / "embedder_faceres.onnx"
    engine_graph = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    # Real faces, aligned as the bundle's faceres part aligns them (the 150 px dlib chips, resized).
    chips = torch.nn.functional.interpolate(
        torch.from_numpy(tiny_chips.chips[:6]).permute(0, 3, 1, 2).float(), size=224, mode="bilinear"
    )
    want = engine_graph.run(None, {"chips": chips.numpy()})[0]
    with torch.no_grad():
        got = torch.nn.functional.normalize(model(chips), dim=1).numpy()
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    # Kernels and per-channel constants train; the input's channel means stay fixed.
    assert len(list(model.parameters())) > 50
    assert not any(tuple(p.shape) == (1, 3, 1, 1) for p in model.parameters())
    assert any(tuple(b.shape) == (1, 3, 1, 1) for b in model.buffers())


CLOSURE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import training.sagemaker_entry, training.pipeline
print(json.dumps({n: m.__file__ for n, m in list(sys.modules.items()) if getattr(m, "__file__", None)}))
"""


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def _installed_closure(names: set) -> set:
    """The distributions pip would install for ``names`` (as installed here), transitively."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen, todo = set(), list(names)
    while todo:
        name = _normal(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


@pytest.mark.slow
def test_the_sagemaker_source_dir_holds_what_training_imports_and_installs_what_it_needs(tmp_path):
    """The job's ``source_dir`` (python -m training.sagemaker_package): every project module the
    entry point imports comes from it, and every third-party import of those modules — also the ones
    inside functions — is installed by its requirements.txt or is the image's torch."""
    import ast
    import subprocess
    import sys
    from importlib import metadata

    from training import sagemaker_package

    tree = sagemaker_package.build(tmp_path / "source_dir")
    pins = [line for line in (tree / "requirements.txt").read_text().splitlines() if line and line[0] != "#"]
    names = {_normal(pin.split("==")[0]) for pin in pins}
    assert names.isdisjoint({"pymongo", "pyjwt", "aws-lambda-powertools", "requests", "chalice"})  # the Lambda's
    assert "pillow-heif==1.8.1" in pins  # the decoder that survives ../shared/fuzz, as the endpoint image's
    assert {"pytorch-metric-learning", "onnx", "onnxruntime", "numpy"} <= names

    result = subprocess.run(
        [sys.executable, "-I", "-c", CLOSURE, str(tree)], capture_output=True, text=True, timeout=300, check=True
    )
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    project = {n: f for n, f in modules.items() if n.split(".")[0] in sagemaker_package.PACKAGES}
    assert "training.pipeline" in project
    assert all(Path(f).is_relative_to(tree) for f in project.values()), project
    imported = set()
    for path in project.values():
        for node in ast.walk(ast.parse(Path(path).read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - set(sagemaker_package.PACKAGES) - {"__future__"}
    distributions = metadata.packages_distributions()
    needed = {_normal(d) for top in third_party for d in distributions.get(top, [top])}
    provided = _installed_closure(names) | {"torch", "torchvision"}  # the framework image's
    assert needed <= provided, needed - provided
