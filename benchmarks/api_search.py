"""Search through the local stack's API: ``POST /search`` with a face of the album as the key, over
HTTP to Chalice's local server (token verification, routing, the error middleware), on the embedded
store, with the real face endpoint answering what bundle it serves (asked once, then cached).

    .venv/bin/python -m benchmarks.api_search [--photos 10000]   → benchmarks/results/api_search.json

The album is written straight into the store (indexing 10,000 photos through the endpoint would take
hours on 2 cores): photos of 500 synthetic people, two faces a photo, vectors of the bundle's
dimension around each person's centre (same-person cosine ≈ 0.8, so every key has ≥ 30 results), with
their cohort statistics computed against the bundle's cohort exactly as the endpoint does. Each
request is timed at the client; ``where`` splits a request's time by layer (A/B in the same run).
Then the album is grouped into its synthetic identities (written into the store, as a perfect
regrouping would leave it) and the people routes are timed the same way (``people``): people-aware
Find, the next question, an answer and its effect.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests

from benchmarks.common import percentiles, write_results

PEOPLE = 500
FACES_PER_PHOTO = 2
PASSWORD = "Corr3ct-Horse!"
REQUESTS = 60


def album_faces(rng, photos: int, dim: int, cohort: np.ndarray | None, top_n: int):
    """(person of each face, unit vectors, cohort mean, cohort std)."""
    from chalicelib.shared.score_norm import cohort_stats

    centres = rng.standard_normal((PEOPLE, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    people = rng.integers(0, PEOPLE, photos * FACES_PER_PHOTO)
    noise = rng.standard_normal((len(people), dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    vectors = centres[people] * 0.9 + noise * 0.44
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    if cohort is None:
        return people, vectors, None, None
    mean, std = cohort_stats(vectors, cohort, top_n)
    return people, vectors, mean, std


def fill_album(photo_store, owner: str, rng, photos: int, manifest, bundle_dir: Path) -> list[str]:
    """Writes the album; returns the face ids used as keys."""
    from chalicelib.records import timeline_at
    from chalicelib.stores.photo_store import vector_to_binary

    norm = manifest.normalisation
    cohort = np.load(bundle_dir / norm["cohort"]["path"]) if norm else None
    people, vectors, mean, std = album_faces(rng, photos, manifest.embedding_dim, cohort, norm["top_n"] if norm else 0)
    uploaded = time.time()
    records = []
    for p in range(photos):
        at = datetime.fromtimestamp(uploaded - p, UTC)
        records.append(
            {
                "owner": owner,
                "photo_id": f"{p:032x}",
                "key": f"photos/{owner}/{p:032x}.jpg",
                "filename": f"photo{p}.jpg",
                "content_type": "image/jpeg",
                "declared_size": 2_000_000,
                "status": "indexed",
                "error": None,
                "face_count": FACES_PER_PHOTO,
                "width": 4000,
                "height": 3000,
                "taken_at": None,
                "uploaded_at": at,
                "timeline_at": timeline_at(at),
                "thumbnail_key": f"thumbnails/{owner}/{p:032x}.jpg",
                "model_version": manifest.version,
            }
        )
    for start in range(0, photos, 1000):
        photo_store.add_photos(records[start : start + 1000])
    faces = [
        {
            "owner": owner,
            "photo_id": f"{i // FACES_PER_PHOTO:032x}",
            "face_id": f"{i // FACES_PER_PHOTO:032x}-{i % FACES_PER_PHOTO:03d}",
            "face_index": i % FACES_PER_PHOTO,
            "box": [100, 100, 300, 300],
            "score": 0.99,
            "landmarks": [],
            "embedding": vector_to_binary(vector),
            "model_version": manifest.version,
            "cohort_mean": float(mean[i]) if mean is not None else None,
            "cohort_std": float(std[i]) if std is not None else None,
        }
        for i, vector in enumerate(vectors)
    ]
    for start in range(0, len(faces), 1000):  # as replace_faces stores them, in bulk (a benchmark's shortcut)
        photo_store.faces.insert_many(faces[start : start + 1000])
    keys = [f"{(i * 7919) % photos:032x}-000" for i in range(REQUESTS)]
    return keys, faces, people


def group_as_identities(services, owner: str, faces: list[dict], people: np.ndarray) -> None:
    """The album grouped into its synthetic identities, as a perfect regrouping would group it:
    person records, and the faces stored again with their person (in bulk: the embedded store
    updates one face at a time far slower than Atlas; a benchmark's shortcut)."""
    ids = [services.people_store.create(owner)["person_id"] for _ in range(PEOPLE)]
    for face, person in zip(faces, people.tolist()):
        face.update(person_id=ids[person], assigned_by="auto")
    services.photo_store.faces.delete_many({"owner": owner})
    for start in range(0, len(faces), 1000):
        services.photo_store.faces.insert_many(faces[start : start + 1000])
    counts = np.bincount(people, minlength=PEOPLE)
    first = {}
    for face, person in zip(faces, people.tolist()):
        first.setdefault(person, face)
    for person, person_id in enumerate(ids):
        cover = first.get(person)
        services.people_store.people.update_one(
            {"person_id": person_id, "owner": owner},
            {
                "$set": {
                    "face_count": int(counts[person]),
                    "photo_count": int(counts[person]),
                    "cover_face_id": cover["face_id"] if cover else None,
                    "cover_photo_id": cover["photo_id"] if cover else None,
                }
            },
        )


def where_the_time_goes(services, headers: dict, user_sub: str, keys: list[str]) -> dict:
    """p50 per request of each layer, unprofiled (a profiler inflates call-dense code), in one run:
    the API in process (Chalice's local gateway: token check, routing, middleware; no socket), the
    same with URL signing replaced by a constant string, and the search alone (``FaceSearch``)."""
    import json
    import statistics
    from unittest import mock

    from chalice.test import Client

    import app as app_module
    from chalicelib.edge.request_models import search_request
    from chalicelib.records import User

    def timed(call) -> float:
        call(keys[0])  # warm
        times = []
        for face_id in keys:
            start = time.perf_counter()
            call(face_id)
            times.append(time.perf_counter() - start)
        return round(statistics.median(times) * 1000, 2)

    with Client(app_module.app) as client:

        def api(face_id):
            answer = client.http.post("/search", headers=headers, body=json.dumps(key_body(face_id)))
            assert answer.status_code == 200, answer.body

        in_process = timed(api)
        with mock.patch.object(type(app_module.services.object_storage), "presigned_get", return_value="u"):
            unsigned = timed(api)
    user = User(sub=user_sub)
    search_only = timed(lambda face_id: services.face_search.search(user, search_request(key_body(face_id))))
    return {
        "api_in_process_p50_ms": in_process,
        "api_in_process_without_url_signing_p50_ms": unsigned,
        "url_signing_ms": round(in_process - unsigned, 2),
        "face_search_alone_p50_ms": search_only,  # gateway, token check and middleware: the rest, within noise
    }


def people_round_trips(http, api_url: str, headers: dict, keys: list[str], services, sub: str) -> dict:
    """Once the album is grouped into people: people-aware Find (the same keys, each now a face of a
    person), the next question of a person, an answer (yes and no in turn: a no lets the face's
    neighbours vote it elsewhere) and the person read back with the answer's effect, over HTTP."""

    def timed(method: str, path: str, body=None) -> tuple[float, dict]:
        start = time.perf_counter()
        answer = http.request(method, f"{api_url}/{path}", json=body, headers=headers, timeout=120)
        elapsed = time.perf_counter() - start
        answer.raise_for_status()
        return elapsed, answer.json()

    find, with_person = [], 0
    for face_id in [keys[0], *keys]:
        elapsed, found = timed("POST", "search", key_body(face_id))
        find.append(elapsed)
        with_person += found["person"] is not None
    people = services.people_store.page(sub, 0, REQUESTS, include_hidden=False)
    asked, answered, shown = [], [], []
    for n, person in enumerate(people):
        elapsed, questions = timed("GET", f"people/{person['person_id']}/suggestions?limit=1")
        asked.append(elapsed)
        if not questions["suggestions"]:
            continue
        word = {"accept": n % 2 == 0}
        body = {"answers": [dict(face_id=questions["suggestions"][0]["face_id"], **word)]}
        answered.append(timed("POST", f"people/{person['person_id']}/suggestions", body)[0])
        shown.append(answered[-1] + timed("GET", f"people/{person['person_id']}")[0])
    return {
        "find_people_aware": percentiles(find[1:]),
        "find_keys_with_a_person": f"{with_person - 1} of {len(keys)}",
        "next_question": percentiles(asked),
        "answer": percentiles(answered),
        "answer_and_person_read_back": percentiles(shown),
        "answers": len(answered),
    }


def key_body(face_id: str) -> dict:
    return {"photo_id": face_id[:32], "face_id": face_id, "limit": 30}


@contextlib.contextmanager
def local_album(photos: int) -> Iterator[LocalAlbum]:
    """The local stack (moto, the real face endpoint, Chalice's local server over HTTP) with one
    signed-in user whose album holds ``photos`` synthetic photos; stopped on leaving."""
    import threading

    from moto.server import ThreadedMotoServer

    from chalicelib.services import Services
    from chalicelib.settings import Settings
    from gpu_endpoint.bundle import DEFAULT_DIR, Manifest
    from local_stack.__main__ import serve_api
    from local_stack.aws import client, create_confirmed_user, free_port, provision, sign_in
    from local_stack.endpoint import EndpointProcess

    manifest = Manifest.load(DEFAULT_DIR)
    state = Path(tempfile.mkdtemp(prefix="api-search-"))
    moto_port, api_port, endpoint_port = free_port(), free_port(), free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    api_url = f"http://127.0.0.1:{api_port}"
    info = provision(f"http://127.0.0.1:{moto_port}", "bench-search", api_url, str(state / "store"))
    faces = EndpointProcess(DEFAULT_DIR, "127.0.0.1", endpoint_port, info.app_environment(), state / "endpoint.log")
    server = None
    try:
        faces.wait_ready()
        info.endpoint_url = faces.url
        os.environ.update(info.app_environment())
        create_confirmed_user(info, "bench@example.com", PASSWORD)
        tokens = sign_in(info, "bench@example.com", PASSWORD)
        cognito = client("cognito-idp", info.aws_endpoint_url)
        attributes = cognito.get_user(AccessToken=tokens["AccessToken"])["UserAttributes"]
        sub = next(a["Value"] for a in attributes if a["Name"] == "sub")

        services = Services(Settings.from_env(info.app_environment()))
        started = time.perf_counter()
        keys, face_records, people = fill_album(
            services.photo_store, sub, np.random.default_rng(0), photos, manifest, DEFAULT_DIR
        )
        fill_s = time.perf_counter() - started

        server = serve_api("127.0.0.1", api_port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        headers = {"Authorization": f"Bearer {tokens['IdToken']}", "Content-Type": "application/json"}
        yield LocalAlbum(services, api_url, headers, sub, keys, face_records, people, fill_s)
    finally:
        if server is not None:
            server.shutdown()
        faces.stop()
        moto.stop()


@dataclass
class LocalAlbum:
    """The benchmark's album on a running local stack."""

    services: Any
    api_url: str
    headers: dict
    sub: str  # the user's id
    keys: list[str]  # the face ids searched with
    faces: list[dict]
    people: np.ndarray  # each face's synthetic identity
    fill_s: float


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=10_000)
    args = parser.parse_args(argv)

    with local_album(args.photos) as album:
        services, api_url, headers, sub, keys = album.services, album.api_url, album.headers, album.sub, album.keys
        http = requests.Session()
        times, counts = [], []
        for face_id in [keys[0], *keys]:  # the first: cold (vectors loaded, served model asked)
            start = time.perf_counter()
            answer = http.post(f"{api_url}/search", json=key_body(face_id), headers=headers, timeout=120)
            times.append(time.perf_counter() - start)
            answer.raise_for_status()
            counts.append(len(answer.json()["results"]))
        results = {
            "photos": args.photos,
            "faces": args.photos * FACES_PER_PHOTO,
            "results_per_page": round(float(np.mean(counts[1:])), 1),
            "first_call_ms": round(times[0] * 1000, 1),
            "warm": percentiles(times[1:]),
            "fill_album_s": round(album.fill_s, 1),
            "where": where_the_time_goes(services, headers, sub, keys),
        }
        group_as_identities(services, sub, album.faces, album.people)
        results["people"] = people_round_trips(http, api_url, headers, keys, services, sub)
    write_results("api_search.json", results)
    print(results["warm"], results["results_per_page"], results["people"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
