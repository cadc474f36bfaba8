"""The face engine: a model bundle loaded into ONNX Runtime; detect → align → embed.

Faces of every image in a call are embedded together, in batches. A bundle's embedder has one
or more parts (e.g. dlib's ResNet and HSE's faceres), each with its own alignment and graph; each
part's graph ends in a unit vector, and the served embedding is their concatenation, each part
scaled by √weight (weights sum to 1), so it is a unit vector too and its cosine is the weighted
mean of the parts' cosines.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from chalicelib.shared.boxes import box_iou
from chalicelib.shared.score_norm import QueryExpansion, cohort_stats

from .align import warp_chip
from .batching import SharedBatches
from .bundle import Manifest
from .detector import MTCNN, Detections

# A caller-given box matches a face the detector finds in it at this overlap.
BOX_MATCH_IOU = 0.3
# Where the five landmarks (eyes, nose, mouth corners) of a frontal face fall in its box, as
# fractions of its width and height: a box without a detected face is aligned as if it held one.
FRONTAL_LANDMARKS = ((0.31, 0.40), (0.69, 0.40), (0.50, 0.58), (0.35, 0.78), (0.65, 0.78))

log = logging.getLogger("face_engine")


def choose_providers() -> list[str]:
    """CUDA on a GPU (TensorRT too when FACE_ENGINE_TENSORRT=1), CPU otherwise."""
    available = ort.get_available_providers()
    chosen = []
    if os.environ.get("FACE_ENGINE_TENSORRT") == "1" and "TensorrtExecutionProvider" in available:
        chosen.append("TensorrtExecutionProvider")
    if "CUDAExecutionProvider" in available:
        chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


def fuse(outputs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The served embedding from each part's output (one part: its output as it is)."""
    if len(outputs) == 1:
        return outputs[0]
    return np.hstack([np.sqrt(w) * out for w, out in zip(weights, outputs)]).astype(np.float32)


@dataclass
class EmbedderPart:
    """One embedding model of the bundle: its graph, chip size, alignment template and weight."""

    name: str
    session: ort.InferenceSession
    size: int
    template: np.ndarray
    weight: float
    dim: int
    flip: bool = False  # test-time flip: average with the mirrored chip's vector
    shared: SharedBatches | None = None  # batches shared with concurrent requests (``batch_wait_ms``)

    def chips(self, image: Image.Image, faces: Sequence[Face]) -> np.ndarray:
        """(N, size, size, 3) uint8 aligned chips."""
        if not faces:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.stack([warp_chip(image, np.asarray(f.landmarks), self.template, self.size) for f in faces])

    def embed(self, chips: np.ndarray, batch_size: int) -> np.ndarray:
        """(N, S, S, 3) uint8 chips → (N, dim) float32: the graph's outputs; with ``flip``, the normalised
        sum of the chip's and its mirror image's (the graph's output must then be a unit vector)."""
        if not self.flip or not len(chips):
            return self.run_graph(chips, batch_size)
        both = self.run_graph(np.concatenate([chips, chips[:, :, ::-1]]), batch_size)  # one call: one batch
        out = both[: len(chips)] + both[len(chips) :]
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def run_graph(self, chips: np.ndarray, batch_size: int) -> np.ndarray:
        """The graph's outputs for these chips, as they are (no flip)."""
        if self.shared is not None:
            return self.shared(chips)
        return self.run_batches(chips, batch_size)

    def run_batches(self, chips: np.ndarray, batch_size: int) -> np.ndarray:
        """The graph run on ``batch_size`` chips at a time, in this thread."""
        out = [
            self.session.run(None, {"chips": chips[i : i + batch_size].transpose(0, 3, 1, 2).astype(np.float32)})[0]
            for i in range(0, len(chips), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


@dataclass
class Face:
    """One face as the engine answers it."""

    box: list[float]  # x, y, w, h in original pixels
    score: float
    landmarks: list[list[float]]
    embedding: np.ndarray | None = None
    cohort: tuple[float, float] | None = None  # (mean, std) of its top cohort scores
    aligned: bool | None = None  # for a caller-given box: were landmarks found inside it

    def to_json(self) -> dict:
        """The face as the endpoint's JSON answer holds it."""
        assert self.embedding is not None, "a face is answered once it is embedded"
        out = {
            "box": [round(v, 2) for v in self.box],
            "score": round(float(self.score), 5),
            "landmarks": [[round(x, 2), round(y, 2)] for x, y in self.landmarks],
            "embedding": [float(v) for v in self.embedding],
        }
        if self.cohort is not None:
            out["cohort_mean"], out["cohort_std"] = float(self.cohort[0]), float(self.cohort[1])
        if self.aligned is not None:
            out["source"], out["aligned"] = "box", self.aligned
        return out


class FaceEngine:
    """Detects, aligns and embeds the faces of an image with one model bundle."""

    def __init__(
        self,
        bundle_dir,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        max_detect_pixels: int = 2_100_000,
        batch_size: int = 32,
        batch_wait_ms: float = 0.0,
    ):
        """``batch_wait_ms`` > 0: each part's chips wait that long for concurrent requests' chips and
        run with them (``gpu_endpoint.batching``), up to four ``batch_size`` batches at once."""
        self.bundle_dir = Path(bundle_dir)
        self.manifest = Manifest.load(self.bundle_dir)
        self.providers = list(providers or choose_providers())
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # By default each session's threads spin after a run, waiting for the next; with five
        # sessions taking turns (and numpy between them) the spinning threads take the cores the
        # next step needs: 1 MP detect + embed 122 → 76 ms on 2 cores
        # (benchmarks/results/detect_speed_spinning_only.json).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(name):
            return ort.InferenceSession(
                str(self.manifest.path(self.bundle_dir, name)), options, providers=self.providers
            )

        detector = self.manifest.detector
        self.detector = MTCNN(
            session("pnet"),
            session("rnet"),
            session("onet"),
            thresholds=tuple(detector["thresholds"]),
            factor=detector["pyramid_factor"],
        )
        self.parts = [
            EmbedderPart(
                p["name"],
                session(p["file"]),
                p["input_size"],
                np.asarray(p["alignment_template"], np.float64),
                float(p["weight"]),
                p["embedding_dim"],
                bool(p.get("test_time_flip", False)),
            )
            for p in self.manifest.parts
        ]
        self.max_detect_pixels = max_detect_pixels
        self.batch_size = batch_size
        if batch_wait_ms > 0:
            for part in self.parts:
                part.shared = SharedBatches(
                    functools.partial(part.run_batches, batch_size=batch_size), batch_wait_ms / 1000, 4 * batch_size
                )
        # Cohort score normalisation, when the bundle declares it (chalicelib/shared/score_norm.py).
        self.normalisation = self.manifest.normalisation
        self.cohort = np.load(self.bundle_dir / self.normalisation["cohort"]["path"]) if self.normalisation else None
        log.info("face engine ready: bundle %s, providers %s", self.version, self.active_providers)

    @property
    def active_providers(self) -> list[str]:
        """What every session actually runs on: ONNX Runtime falls back to the CPU, with a
        warning only, when it cannot start CUDA (a driver older than the image's CUDA)."""
        sessions = [self.detector.pnet, self.detector.rnet, self.detector.onet, *(part.session for part in self.parts)]
        return [p for p in self.providers if all(p in s.get_providers() for s in sessions)]

    @property
    def version(self) -> str:
        """The served bundle's version."""
        return self.manifest.version

    @property
    def threshold(self) -> float:
        """The similarity above which a face counts as the same person in album search."""
        return self.manifest.search_threshold

    # Detection ----------------------------------------------------------------
    def detect(self, image: Image.Image, min_face_size: int = 20, max_faces: int = 50) -> list[Face]:
        """Faces of an RGB image, largest first.

        facenet-pytorch's cascade clamps its crops at the image border, which
        squashes a face that reaches past it (a profile picture that is all
        face) and spoils its landmarks.  Such photos, and photos where nothing
        was found, are searched again with a border of repeated edge pixels.
        """
        faces, cut_off = self._detect(image, min_face_size, pad_fraction=0.0)
        if not faces or cut_off:
            padded, _ = self._detect(image, min_face_size, pad_fraction=0.3)
            faces = padded or faces
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        return faces[:max_faces]

    def _detect(self, image: Image.Image, min_face_size: int, pad_fraction: float):
        width, height = image.size
        pad = int(pad_fraction * max(width, height))
        if pad:
            image = Image.fromarray(np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
        factor = 1.0
        pixels = image.size[0] * image.size[1]
        if pixels > self.max_detect_pixels:
            factor = float(np.sqrt(pixels / self.max_detect_pixels))
            image = image.resize(
                (max(1, round(image.size[0] / factor)), max(1, round(image.size[1] / factor))), Image.Resampling.BOX
            )
        found = self.detector.detect(np.asarray(image), max(12, int(round(min_face_size / factor))))
        boxes = found.boxes * factor - pad
        # A face whose box reaches more than 5 % of its size past the photo's edge.
        size = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)[:, None]
        outside = np.concatenate([-boxes[:, :2], boxes[:, 2:] - [width, height]], axis=1)
        cut_off = bool(len(boxes)) and bool((outside > 0.05 * size).any())
        return self._faces(found, factor, pad, pad, width, height), cut_off

    @staticmethod
    def _faces(found: Detections, factor, dx, dy, width, height) -> list[Face]:
        faces = []
        for box, score, points in zip(found.boxes, found.scores, found.landmarks):
            x1, y1, x2, y2 = box * factor - [dx, dy, dx, dy]
            x1, y1 = max(0.0, float(x1)), max(0.0, float(y1))
            x2, y2 = min(float(width), float(x2)), min(float(height), float(y2))
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            landmarks = (points * factor - [dx, dy]).tolist()
            faces.append(Face([x1, y1, x2 - x1, y2 - y1], float(score), landmarks))
        return faces

    def faces_in_boxes(self, image: Image.Image, boxes: Sequence[Sequence[float]]) -> list[Face]:
        """Faces at caller-given [x, y, w, h] boxes (faces the detector missed). The detector is run
        on each box with a margin: a face it finds overlapping the box (IoU ≥ 0.3) gives landmarks
        and alignment; otherwise the box is embedded as it is, with landmarks where a frontal face
        filling it would have them (``aligned`` False)."""
        width, height = image.size
        out = []
        for box in boxes:
            x, y, w, h = (float(v) for v in box)
            margin = 0.3 * max(w, h)
            left, top = int(max(0.0, x - margin)), int(max(0.0, y - margin))
            right, bottom = int(min(width, x + w + margin + 1)), int(min(height, y + h + margin + 1))
            found = self.detect(image.crop((left, top, right, bottom)), max(12, int(0.4 * min(w, h))), 5)
            shifted = [
                Face(
                    [f.box[0] + left, f.box[1] + top, f.box[2], f.box[3]],
                    f.score,
                    [[px + left, py + top] for px, py in f.landmarks],
                )
                for f in found
            ]
            best = max(shifted, key=lambda f: box_iou(f.box, [x, y, w, h]), default=None)
            if best is not None and box_iou(best.box, [x, y, w, h]) >= BOX_MATCH_IOU:
                best.box, best.aligned = [x, y, w, h], True
                out.append(best)
            else:
                points = [[x + fx * w, y + fy * h] for fx, fy in FRONTAL_LANDMARKS]
                out.append(Face([x, y, w, h], 0.0, points, aligned=False))
        return out

    # Embedding ----------------------------------------------------------------
    def embed(self, image: Image.Image, faces: Sequence[Face]) -> np.ndarray:
        """(N, D) float32 served embeddings of these faces of one image."""
        return self.fuse([part.embed(part.chips(image, faces), self.batch_size) for part in self.parts])

    def fuse(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """One vector per face from the embedder parts' outputs, weighted as the bundle says."""
        return fuse(outputs, [part.weight for part in self.parts])

    def split(self, embeddings: np.ndarray) -> list[np.ndarray]:
        """Each part's unit vectors back out of served embeddings (benchmarks compare the parts)."""
        bounds = np.cumsum([0] + [part.dim for part in self.parts])
        return [embeddings[:, a:b] / np.sqrt(part.weight) for part, a, b in zip(self.parts, bounds, bounds[1:])]

    def analyze(
        self,
        images: Sequence[Image.Image],
        min_face_size: int = 20,
        max_faces: int = 50,
        boxes: Sequence[Sequence | None] | None = None,
        detect: bool = True,
    ) -> list[list[Face]]:
        """Detect in every image (unless ``detect`` is False), add the faces at each image's
        caller-given ``boxes`` after them, then embed all the faces together."""
        boxes = boxes or [None] * len(images)
        per_image = [
            (self.detect(img, min_face_size, max_faces) if detect else []) + self.faces_in_boxes(img, extra or [])
            for img, extra in zip(images, boxes)
        ]
        outputs = []
        for part in self.parts:
            chips = [part.chips(img, faces) for img, faces in zip(images, per_image)]
            outputs.append(
                part.embed(np.concatenate(chips), self.batch_size) if chips else np.zeros((0, part.dim), np.float32)
            )
        embeddings = self.fuse(outputs)
        stats = None
        if self.normalisation is not None and self.cohort is not None and len(embeddings):
            stats = cohort_stats(embeddings, self.cohort, self.normalisation["top_n"])
        index = 0
        for faces in per_image:
            for face in faces:
                face.embedding = embeddings[index]
                if stats is not None:
                    face.cohort = (float(stats[0][index]), float(stats[1][index]))
                index += 1
        return per_image

    @property
    def grouping(self) -> dict | None:
        """The bundle's grouping calibration (``chalicelib.grouping.GroupingParams``), if it has one."""
        return self.manifest.grouping

    @property
    def search_settings(self) -> dict | None:
        """What search needs of the bundle's normalisation: ``{"method", "raw_floor", "threshold",
        "expansion"}`` (expansion: ``chalicelib.shared.score_norm.QueryExpansion``'s settings, or null)."""
        if not self.normalisation:
            return None
        settings = {k: self.normalisation[k] for k in ("method", "raw_floor", "threshold")}
        expansion = QueryExpansion.from_settings(self.normalisation.get("expansion"))
        settings["expansion"] = expansion.settings() if expansion else None
        return settings
