"""The bundle format's one owner: loading refuses what this code cannot serve, saving seals the files."""

import json

import pytest

from gpu_endpoint.bundle import FORMAT, BundleError, Manifest, sha256
from model_factory import deploy


def write(folder, document):
    folder.mkdir(exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(document))
    return folder


def test_a_folder_without_a_manifest_is_not_a_bundle(tmp_path):
    assert not Manifest.exists(tmp_path)
    with pytest.raises(BundleError, match="no manifest.json"):
        Manifest.load(tmp_path)


def test_an_older_format_is_refused_with_the_way_out(tmp_path):
    write(tmp_path, {"format": "memory-studio-face-bundle/1", "version": "dlib-resnet-v1.aaaa"})
    with pytest.raises(BundleError, match="rebuild it"):
        Manifest.load(tmp_path)


def test_save_records_each_files_digest_and_load_reads_it_back(tmp_path):
    (tmp_path / "embedder.onnx").write_bytes(b"graph")
    document = {
        "format": FORMAT,
        "version": "v1",
        "files": {"embedder": {"path": "embedder.onnx"}},
        "embedder": {"embedding_dim": 3, "parts": [{"file": "embedder"}]},
        "calibration": {"threshold": 0.6, "search_threshold": 0.7},
    }
    Manifest(document).save(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded.files["embedder"]["sha256"] == sha256(tmp_path / "embedder.onnx")
    assert (loaded.version, loaded.embedding_dim, loaded.search_threshold, loaded.normalisation) == ("v1", 3, 0.7, None)
    assert loaded.path(tmp_path, "embedder") == tmp_path / "embedder.onnx"


def test_deploy_refuses_a_folder_that_is_not_a_bundle_before_uploading(tmp_path, capsys):
    assert deploy.main(["publish", "--bucket", "b", "--bundle", str(tmp_path)]) == 2
    assert "not a face model bundle" in capsys.readouterr().err
