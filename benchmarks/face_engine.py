"""Face engine on this machine's CPU: embedding, detection by photo size, and the
server end to end under concurrent requests.

    .venv/bin/python -m benchmarks.face_engine   → benchmarks/results/face_engine_cpu.json

Everything is measured in one run so the numbers compare with each other; the
machine is shared, so read ratios rather than absolute values.

On a GPU machine (#18), the server alone through ``/invocations``, with and without batches shared by
concurrent requests, one worker process as ``gpu_endpoint.serve`` runs it there:

    python -m benchmarks.face_engine --server-only --workers 1 --threads 32 --clients 32 \
        --requests 960 --batch-wait-ms 0 5 --out face_engine_gpu.json
"""

from __future__ import annotations

import argparse
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
from gpu_endpoint.serve import default_workers
from local_stack.aws import free_port
from local_stack.endpoint import EndpointProcess
from model_factory.facedata import labelled_photos


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


def server_throughput(
    bundle: Path,
    photos: list,
    clients: int = 4,
    requests_total: int = 48,
    workers: int | None = None,
    threads: int = 1,
    batch_wait_ms: float = 0.0,
) -> dict:
    workers = workers or default_workers(gpu=False)
    port = free_port()
    server = EndpointProcess(
        bundle,
        "127.0.0.1",
        port,
        {"FACE_ENGINE_BATCH_WAIT_MS": str(batch_wait_ms)},
        Path(tempfile.mkdtemp()) / "endpoint.log",
        workers=workers,
        threads=threads,
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
        providers = requests.get(f"http://127.0.0.1:{port}/ping", timeout=10).json().get("providers")
        return {
            "providers": providers,
            "workers": workers,
            "threads": threads,
            "batch_wait_ms": batch_wait_ms,
            "clients": clients,
            "requests": requests_total,
            "seconds": seconds,
            "photos_per_s": requests_total / seconds,
            "faces_per_s": faces / seconds,
            "server_peak_rss_mb": peak_rss_mb(server.process.pid),
        }
    finally:
        server.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-only", action="store_true", help="only the server through /invocations")
    parser.add_argument("--workers", type=int, default=None, help="server worker processes (default cores / 2)")
    parser.add_argument("--threads", type=int, default=1, help="request threads per worker")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--batch-wait-ms", type=float, nargs="+", default=[0.0], help="one server run per value")
    parser.add_argument("--out", default="face_engine_cpu.json", help="file name under benchmarks/results/")
    args = parser.parse_args(argv)
    loaded = cpu_engine()
    if loaded is None:
        return 1
    root, engine = loaded
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "bundle": engine.version}
    if not args.server_only:
        results.update(engine_figures(root, engine))
    group = root / "groups/dlib/2008_002470.jpg"
    singles = [p.path for p in labelled_photos(root) if p.source == "deepface" and p.path.suffix == ".jpg"][:6]
    runs = [
        server_throughput(DEFAULT_DIR, singles + [group], args.clients, args.requests, args.workers, args.threads, wait)
        for wait in args.batch_wait_ms
    ]
    results["server"] = runs[0]
    if len(runs) > 1:
        results["server_by_batch_wait_ms"] = {str(r["batch_wait_ms"]): r for r in runs}
    write_results(args.out, results)
    return 0


def engine_figures(root: Path, engine) -> dict:
    """Embedding per part and detection by photo size, in this process."""
    big = Image.open(root / "people/deepface/Angelina_Jolie/img4.jpg").convert("RGB")
    face = engine.detect(big, max_faces=1)
    results: dict = {"embedding": {}, "detection": {}}
    for part in engine.parts:  # each embedder of the bundle, on its own aligned chip
        chips = part.chips(big, face)
        for batch in (1, 32):
            batch_chips = np.repeat(chips, batch, axis=0)
            ms = median_ms(lambda part=part, chips=batch_chips: part.embed(chips, 32), 10 if batch == 1 else 3)
            results["embedding"][f"{part.name}_batch_{batch}_ms_per_face"] = ms / batch
    for mp in (0.3, 1.0, 4.0):
        image = resized(big, mp)
        detect_ms = median_ms(lambda image=image: engine.detect(image), 5)
        total_ms = median_ms(lambda image=image: engine.analyze([image]), 5)
        results["detection"][f"{mp}MP"] = {"detect_ms": detect_ms, "detect_and_embed_ms": total_ms}
    return results


if __name__ == "__main__":
    sys.exit(main())
