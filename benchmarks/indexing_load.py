"""Indexing under load with injected face-service failures.

    .venv/bin/python -m benchmarks.indexing_load [--photos 300] [--failure-rate 0.1] [--out NAME]
    → benchmarks/results/indexing_load.json

A real local stack in one process: moto's server (S3, SQS, Cognito), the
embedded store, the face endpoint serving the built bundle, and between them a
proxy that answers a random share of calls with a 500, a 429 or unreadable
JSON.  Photos are uploaded through the API's presigned POSTs by three users in
parallel and indexed by two event pumps.  Every photo must end indexed or
visibly failed, with no duplicate faces and nothing lost.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import requests
from chalice.test import Client
from moto.server import ThreadedMotoServer
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

import app as app_module
from benchmarks.common import write_results
from chalicelib.services import Services
from chalicelib.settings import Settings
from gpu_endpoint.bundle import DEFAULT_DIR
from gpu_endpoint.engine import FaceEngine
from gpu_endpoint.server import create_app
from local_stack.aws import client, create_confirmed_user, free_port, provision, sign_in
from local_stack.pump import EventPump
from model_factory.facedata import facedata_root, labelled_photos


def serve(wsgi_app) -> str:
    port = free_port()
    server = make_server("127.0.0.1", port, wsgi_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}"


def faulty_proxy(target: str, rate: float, seed: int = 7):
    rng, lock, counts = random.Random(seed), threading.Lock(), {"calls": 0, "injected": 0}

    @Request.application
    def proxy(request):
        with lock:
            counts["calls"] += 1
            roll = rng.random()
        if roll < rate:
            with lock:
                counts["injected"] += 1
            kind = rng.choice(["500", "429", "malformed"])
            if kind == "malformed":
                return Response("{oops", 200, content_type="application/json")
            return Response(
                '{"error": "injected", "message": "injected fault"}', int(kind), content_type="application/json"
            )
        real = requests.post(
            f"{target}/invocations", data=request.get_data(), headers={"Content-Type": "application/json"}, timeout=120
        )
        return Response(real.content, real.status_code, content_type="application/json")

    return proxy, counts


def main(argv=None) -> int:
    import logging
    import os

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("local_stack.pump").setLevel(logging.ERROR)
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    from chalicelib.observability import logger

    logger.setLevel("WARNING")
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--failure-rate", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", default="indexing_load.json", help="the results file's name")
    args = parser.parse_args(argv)
    root = facedata_root()
    if root is None:
        print("../shared/facedata is absent", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ms-load-"))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{moto._port}"
        info = provision(
            endpoint,
            "memory-studio-load",
            "http://127.0.0.1:0",
            str(work / "store"),
            visibility_timeout=2,
            max_receive_count=5,
        )
        engine = FaceEngine(DEFAULT_DIR)
        faces_url = serve(create_app(engine, allowed_buckets=[info.bucket], s3_client=client("s3", endpoint)))
        proxy, counts = faulty_proxy(faces_url, args.failure_rate)
        settings = replace(Settings.from_env(info.app_environment()), face_endpoint_url=serve(proxy))
        os.environ.update({k: v for k, v in info.app_environment().items() if k.startswith("AWS_")})
        services = Services(settings)
        services.face_client.base_delay = 0.05
        app_module.services = services
        api = Client(app_module.app)

        users = []
        for n in range(3):
            email = f"load{n}@example.com"
            create_confirmed_user(info, email, "Corr3ct-Horse!")
            users.append(
                {
                    "Authorization": f"Bearer {sign_in(info, email, 'Corr3ct-Horse!')['IdToken']}",
                    "Content-Type": "application/json",
                }
            )
        sources = [p.path for p in labelled_photos(root) if p.source == "celeba"][: args.photos]

        def upload(i):
            headers = users[i % 3]
            data = sources[i].read_bytes()
            body = json.dumps(
                {"files": [{"filename": sources[i].name, "content_type": "image/jpeg", "size": len(data)}]}
            )
            item = api.http.post("/photos/uploads", headers=headers, body=body).json_body["uploads"][0]
            for _ in range(3):  # as a browser client retries a failed upload
                response = requests.post(
                    item["url"], data=item["fields"], files={"file": (sources[i].name, data)}, timeout=60
                )
                if response.status_code == 204:
                    break
                upload_retries.append(response.status_code)
            return item["photo_id"]

        upload_retries = []
        started = time.time()
        with ThreadPoolExecutor(4) as pool:
            photo_ids = list(pool.map(upload, range(len(sources))))
        uploaded = time.time()
        sqs = client("sqs", endpoint)
        pumps = [EventPump(sqs, info.queue_url, app_module.index_photos, wait_seconds=1) for _ in range(2)]
        for pump in pumps:
            pump.start()
        while time.time() - started < args.timeout:
            pending = services.photo_store.photos.count_documents({"status": "pending"})
            retrying = services.photo_store.photos.count_documents({"status": "failed", "retriable": True})
            if pending == 0 and retrying == 0:
                break
            time.sleep(2)
        finished = time.time()
        for pump in pumps:
            pump.stop()
        statuses = {
            s: services.photo_store.photos.count_documents({"status": s}) for s in ("pending", "indexed", "failed")
        }
        duplicates = 0
        for doc in services.photo_store.photos.find({}, {"owner": 1, "photo_id": 1, "face_count": 1}):
            stored = services.photo_store.faces.count_documents({"owner": doc["owner"], "photo_id": doc["photo_id"]})
            duplicates += max(0, stored - doc["face_count"])
        dead = sqs.get_queue_attributes(QueueUrl=info.dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
        results = {
            "photos": len(photo_ids),
            "failure_rate": args.failure_rate,
            "statuses": statuses,
            "lost": len(photo_ids) - statuses["indexed"] - statuses["failed"],
            "duplicate_faces": duplicates,
            "faces": services.photo_store.faces.count_documents({}),
            "endpoint_calls": counts["calls"],
            "injected_failures": counts["injected"],
            "events_redelivered": sum(p.failed for p in pumps),
            "upload_retries_after_moto_errors": len(upload_retries),
            "dead_letters": int(dead["Attributes"]["ApproximateNumberOfMessages"]),
            "upload_seconds": round(uploaded - started, 1),
            "index_seconds": round(finished - uploaded, 1),
            "photos_per_second": round(len(photo_ids) / (finished - uploaded), 2),
        }
        write_results(args.out, results)
        ok = results["lost"] == 0 and results["duplicate_faces"] == 0 and statuses["pending"] == 0
        return 0 if ok else 1
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
