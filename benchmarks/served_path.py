"""What an indexer's request costs through the face endpoint, beside what the engine costs.

    .venv/bin/python -m benchmarks.served_path   → benchmarks/results/served_path.json

One photo per request, sequential, the median of 5 after a warm-up, at 0.05, 1 and 4 megapixels,
all in one run so the layers compare:

- ``in_process``: ``decode_image`` + ``FaceEngine.analyze`` in this process (what the engine figures
  elsewhere measure), and its split: the decode in its isolated child, the same decode without one,
  the analysis;
- ``app``: the endpoint's WSGI app in this process (Flask's test client): the request parsed, the
  answer encoded, no socket;
- ``served``: ``POST /invocations`` to the endpoint as the local stack starts it (``gpu_endpoint.serve``
  under gunicorn, one worker, its default threads), the photo as the body and as the indexer's JSON
  (base64); the server's own split of each request comes from its ``Server-Timing`` header.

The bundle is the served default (test-time flip on).
"""

from __future__ import annotations

import base64
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image

from benchmarks.common import cpu_engine, write_results
from chalicelib.shared.images import MAX_PIXELS, _decode, decode_image
from gpu_endpoint.bundle import DEFAULT_DIR
from gpu_endpoint.server import create_app
from local_stack.aws import free_port
from local_stack.endpoint import EndpointProcess

SIZES_MP = (0.05, 1.0, 4.0)
REPEAT = 5


def jpeg_of(image: Image.Image, megapixels: float) -> bytes:
    scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
    out = io.BytesIO()
    image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS).save(
        out, "JPEG", quality=92
    )
    return out.getvalue()


def median_ms(call) -> float:
    call()  # warm-up: caches, lazily built sessions
    samples = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return round(statistics.median(samples) * 1000, 1)


def server_timing(header: str) -> dict[str, float]:
    """``decode;dur=12.3, analyze;dur=80`` → {"decode": 12.3, "analyze": 80.0}."""
    parts = {}
    for metric in header.split(","):
        name, _, rest = metric.strip().partition(";")
        if rest.startswith("dur="):
            parts[name] = float(rest[4:])
    return parts


def served_median(url: str, body: bytes, content_type: str) -> dict:
    """Round trip and the server's split of it, each the median over the same requests."""
    session = requests.Session()
    splits: list[dict[str, float]] = []

    def call():
        response = session.post(url, data=body, headers={"Content-Type": content_type}, timeout=120)
        response.raise_for_status()
        splits.append(server_timing(response.headers.get("Server-Timing", "")))

    round_trip = median_ms(call)
    measured = splits[1:]
    return {
        "round_trip_ms": round_trip,
        "server_ms": {name: round(statistics.median(s[name] for s in measured), 1) for name in measured[0]},
    }


def main(argv=None) -> int:
    loaded = cpu_engine()
    if loaded is None:
        return 1
    root, engine = loaded
    photo = Image.open(root / "people/deepface/Angelina_Jolie/img4.jpg").convert("RGB")
    app = create_app(engine=engine).test_client()
    server = EndpointProcess(DEFAULT_DIR, "127.0.0.1", free_port(), {}, Path(tempfile.mkdtemp()) / "endpoint.log")
    results: dict = {"bundle": engine.version, "repeat": REPEAT, "sizes": {}}
    try:
        server.wait_ready()
        url = f"{server.url}/invocations"
        for mp in SIZES_MP:
            body = jpeg_of(photo, mp)
            as_json = json.dumps({"images": [{"id": "p", "b64": base64.b64encode(body).decode()}]}).encode()
            faces = len(engine.analyze([decode_image(body).image])[0])
            image = decode_image(body).image
            in_process = median_ms(lambda body=body: engine.analyze([decode_image(body).image]))
            split = {
                "decode_isolated_ms": median_ms(lambda body=body: decode_image(body)),
                "decode_in_this_process_ms": median_ms(lambda body=body: _decode(body, MAX_PIXELS)),
                "analyze_ms": median_ms(lambda image=image: engine.analyze([image])),
            }
            in_app = median_ms(
                lambda body=body: app.post("/invocations", data=body, headers={"Content-Type": "image/jpeg"})
            )
            served = served_median(url, body, "image/jpeg")
            served_json = served_median(url, as_json, "application/json")
            results["sizes"][f"{mp}MP"] = {
                "bytes": len(body),
                "faces": faces,
                "in_process_ms": in_process,
                "in_process_split": split,
                "app_ms": in_app,
                "served": served,
                "served_json": served_json,
                "served_over_in_process": round(served["round_trip_ms"] / in_process, 2),
            }
            print(mp, results["sizes"][f"{mp}MP"], file=sys.stderr)
    finally:
        server.stop()
    write_results("served_path.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
