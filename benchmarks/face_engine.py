"""Face engine on this machine's CPU: embedding, detection by photo size, and the
server end to end under concurrent requests.

    .venv/bin/python -m benchmarks.face_engine   → benchmarks/results/face_engine_cpu.json

Everything is measured in one run so the numbers compare with each other; the
machine is shared, so read ratios rather than absolute values.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from benchmarks.common import cpu_engine, write_results
from gpu_endpoint.bundle import DEFAULT_DIR
from gpu_endpoint.factory.facedata import labelled_photos
from local_stack.aws import free_port
from local_stack.endpoint import EndpointProcess


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def resized(image: Image.Image, megapixels: float) -> Image.Image:
    factor = (megapixels * 1e6 / (image.size[0] * image.size[1])) ** 0.5
    return image.resize((round(image.size[0] * factor), round(image.size[1] * factor)), Image.Resampling.LANCZOS)


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process and its children (gunicorn workers)."""
    total = 0
    for p in [pid] + [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


def server_throughput(bundle: Path, photos: list, clients: int = 4, requests_total: int = 48) -> dict:
    port = free_port()
    server = EndpointProcess(
        bundle,
        "127.0.0.1",
        port,
        {},
        Path(tempfile.mkdtemp()) / "endpoint.log",
        workers=max(1, (os.cpu_count() or 2) // 2),
        threads=1,
    )
    try:
        server.wait_ready()
        bodies = [p.read_bytes() for p in photos]

        def call(i):
            r = requests.post(
                f"http://127.0.0.1:{port}/invocations",
                data=bodies[i % len(bodies)],
                headers={"Content-Type": "image/jpeg"},
                timeout=120,
            )
            r.raise_for_status()
            return len(r.json()["results"][0]["faces"])

        call(0)
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            faces = sum(pool.map(call, range(requests_total)))
        seconds = time.perf_counter() - start
        return {
            "clients": clients,
            "requests": requests_total,
            "seconds": seconds,
            "photos_per_s": requests_total / seconds,
            "faces_per_s": faces / seconds,
            "server_peak_rss_mb": peak_rss_mb(server.process.pid),
        }
    finally:
        server.stop()


def main() -> int:
    loaded = cpu_engine()
    if loaded is None:
        return 1
    root, engine = loaded
    big = Image.open(root / "people/deepface/Angelina_Jolie/img4.jpg").convert("RGB")
    face = engine.detect(big, max_faces=1)
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "bundle": engine.version, "embedding": {}}
    for part in engine.parts:  # each embedder of the bundle, on its own aligned chip
        chips = part.chips(big, face)
        for batch in (1, 32):
            batch_chips = np.repeat(chips, batch, axis=0)
            ms = median_ms(lambda part=part, chips=batch_chips: part.embed(chips, 32), 10 if batch == 1 else 3)
            results["embedding"][f"{part.name}_batch_{batch}_ms_per_face"] = ms / batch
    results["detection"] = {}
    for mp in (0.3, 1.0, 4.0):
        image = resized(big, mp)
        detect_ms = median_ms(lambda image=image: engine.detect(image), 5)
        total_ms = median_ms(lambda image=image: engine.analyze([image]), 5)
        results["detection"][f"{mp}MP"] = {"detect_ms": detect_ms, "detect_and_embed_ms": total_ms}
    group = root / "groups/dlib/2008_002470.jpg"
    singles = [p.path for p in labelled_photos(root) if p.source == "deepface" and p.path.suffix == ".jpg"][:6]
    results["server"] = server_throughput(DEFAULT_DIR, singles + [group])
    write_results("face_engine_cpu.json", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
