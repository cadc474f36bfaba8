"""A large album's graph built by a fan-out of workers (chalicelib/graph_fanout.py): through the
real queues and bucket (moto's server), the blocks together are the whole graph, a block is built
once, a late message finds nothing; on real faces a fanned-out regrouping groups as one job does,
and a large album's new faces are grouped on their own, without a full pass."""

import json
import os
import time
import uuid

import numpy as np
import pytest

import app as app_module
from chalicelib import graph_fanout
from chalicelib.grouping import knn_edges
from local_stack.aws import client
from local_stack.pump import EventPump, WorkerProcesses
from tests.face_fixtures import needs_facedata
from tests.test_grouping import people_like
from tests.test_indexing import drain, empty, face_endpoint, indexing, upload  # noqa: F401 (fixtures)
from tests.test_people import PEOPLE, people_of, people_pump  # noqa: F401 (fixture)


@pytest.fixture
def graph_pump(services, aws_stack):
    """The graph queue, emptied, with a pump into ``graph_rows`` (one worker, in this process)."""
    sqs = client("sqs", aws_stack.aws_endpoint_url)
    for url in (aws_stack.graph_jobs_url, aws_stack.people_jobs_url):
        empty(sqs, url)
    return EventPump(sqs, aws_stack.graph_jobs_url, app_module.graph_rows, wait_seconds=0)


def received(sqs, url: str) -> list[dict]:
    """The bodies of the messages waiting in a queue (removed)."""
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_the_blocks_of_a_fanned_out_graph_are_the_whole_graph(services, aws_stack, graph_pump, monkeypatch):
    monkeypatch.setattr(graph_fanout, "MIN_BLOCK_FACES", 16)  # 60 faces: 4 blocks
    vectors, stats, _ = people_like(6, 10, seed=3)
    monkeypatch.setattr(graph_fanout, "CHUNK_BYTES", 4 * vectors.shape[1] * 25)  # columns in 3 chunks
    rng = np.random.default_rng(2)
    stats = np.column_stack([rng.normal(0.0, 0.05, len(vectors)), rng.uniform(0.05, 0.15, len(vectors))])
    stats[5] = [np.nan, np.nan]
    fanout, owner, token = services.graph_fanout, "owner-1", uuid.uuid4().hex
    face_ids = [f"face-{n}" for n in range(len(vectors))]
    assert fanout.start(owner, token, "v1", face_ids, vectors, stats, 5) == {
        "status": "fanned_out",
        "faces": 60,
        "blocks": 4,
    }
    sqs = client("sqs", aws_stack.aws_endpoint_url)
    drain(graph_pump)
    assert graph_pump.handled == 4 and graph_pump.failed == 0
    # The last worker asked for the agglomeration (two finishing together may both ask).
    announced = received(sqs, aws_stack.people_jobs_url)
    assert announced and all(a == {"regroup": owner, "token": token, "graph": True} for a in announced)

    job = fanout.job(owner, token)
    assert job.blocks == ((0, 15), (15, 30), (30, 45), (45, 60)) and fanout.finished(job)
    ids, (i, j, s) = fanout.graph(job)
    whole = knn_edges(vectors, stats, 5)
    assert ids == face_ids
    assert set(zip(i.tolist(), j.tolist())) == set(zip(whole[0].tolist(), whole[1].tolist()))
    assert np.allclose(s, whole[2], rtol=1e-5) and 5 not in set(i) | set(j)

    # A redelivered block is not built again; a malformed message is ignored.
    written = {key: fanout.storage.head(key)["ETag"] for key in fanout.written(job)}
    block = {"graph_rows": token, "owner": owner, "start": 15, "stop": 30}
    assert fanout.rows(block) == "graph finished"
    assert {key: fanout.storage.head(key)["ETag"] for key in fanout.written(job)} == written
    assert fanout.rows({"graph_rows": token, "owner": owner, "start": "0"}) == "ignored"
    # Once the job is applied and removed, a late block or announcement finds nothing to do.
    fanout.clear(owner, token)
    assert fanout.job(owner, token) is None and fanout.rows(block) == "gone"
    assert services.people_jobs.handle({"regroup": owner, "token": token, "graph": True}) == "gone"


@needs_facedata
def test_a_fanned_out_regrouping_groups_real_faces_as_one_job_does(
    api, make_user, indexing, people_pump, graph_pump, aws_stack, monkeypatch
):
    services, pump = indexing
    alice = make_user("alice")
    for name, count in (("Angelina_Jolie", 5), ("George_Clooney", 4), ("Jennifer_Aniston", 4)):
        for path in sorted((PEOPLE / name).glob("*.jpg"))[:count]:
            upload(api, alice, path.read_bytes(), "image/jpeg")
    drain(pump)
    drain(people_pump)  # the regrouping indexing asked for: one job (13 faces, below the fan-out)
    in_one_job = {photos: person["person_id"] for photos, person in people_of(api, alice).items()}
    assert len(in_one_job) >= 3  # Jolie, Clooney, Aniston (a second face or a split may add more)

    monkeypatch.setattr(graph_fanout, "MIN_BLOCK_FACES", 4)
    services.graph_fanout.fanout_faces = 1  # every album fans out
    response = api.http.post("/people/recluster", headers=alice.headers)
    assert response.status_code == 202 and response.json_body["status"] == "queued"
    drain(people_pump)  # the job writes the graph's inputs and sends its blocks
    assert services.people_store.regroup_token(alice.sub)  # the request stays open until the graph ends
    drain(graph_pump)
    assert graph_pump.handled >= 3 and graph_pump.failed == 0  # one message a block
    # A photo trashed while the workers build the graph: its face is left out when the graph is applied.
    biggest = max(in_one_job, key=len)
    trashed = sorted(biggest)[0]
    response = api.http.post("/photos/trash", headers=alice.headers, body=json.dumps({"photo_ids": [trashed]}))
    assert response.status_code == 200
    drain(people_pump)  # the graph's end: agglomerated and applied
    expected = {(photos - {trashed} if photos == biggest else photos): person for photos, person in in_one_job.items()}
    assert {photos: person["person_id"] for photos, person in people_of(api, alice).items()} == expected
    assert services.people_store.regroup_token(alice.sub) is None
    assert services.object_storage.list_keys(f"graphs/{alice.sub}/") == []  # the job's objects are removed

    # New photos of someone new in a large album: grouped incrementally, no full pass (no graph).
    katy = [upload(api, alice, p.read_bytes(), "image/jpeg") for p in sorted((PEOPLE / "Katy_Perry").glob("*.jpg"))[:4]]
    drain(pump)
    waiting = services.people_store.regroup_request(alice.sub)
    assert not waiting.get("full") and len(waiting["new_faces"]) >= 4  # indexing left them unassigned
    drain(people_pump)
    assert graph_pump.pump_once() == 0  # no block was sent: the album was not regrouped
    now = {person["person_id"]: photos for photos, person in people_of(api, alice).items()}
    new_people = [person for person, photos in now.items() if set(katy) <= photos]
    assert len(new_people) == 1 and new_people[0] not in in_one_job.values()  # Katy: a new person
    for photos, person in expected.items():  # the others keep their photos (indexing may add a face)
        assert photos <= now[person]
    assert services.people_store.regroup_request(alice.sub) is None


@pytest.mark.slow
def test_the_local_stacks_worker_processes_build_a_graph_together(services, aws_stack, graph_pump, monkeypatch):
    """``./dev up`` runs the graph's workers as processes, as Lambda runs concurrent instances."""
    monkeypatch.setattr(graph_fanout, "MIN_BLOCK_FACES", 50)
    vectors, stats, _ = people_like(20, 20, seed=4)
    fanout, owner, token = services.graph_fanout, "owner-2", uuid.uuid4().hex
    assert fanout.start(owner, token, "v1", [str(n) for n in range(400)], vectors, stats, 10)["blocks"] == 8
    workers = WorkerProcesses(dict(os.environ), aws_stack.graph_jobs_url, "graph_rows", 2)
    workers.start()
    try:
        sqs = client("sqs", aws_stack.aws_endpoint_url)
        announced: list = []
        for _ in range(120):
            if announced := received(sqs, aws_stack.people_jobs_url):
                break
            time.sleep(0.5)
        assert announced and announced[0] == {"regroup": owner, "token": token, "graph": True}
        assert {process.is_alive() for process in workers.processes} == {True}
    finally:
        workers.stop()
    _, (i, j, _) = fanout.graph(fanout.job(owner, token))
    whole = knn_edges(vectors, stats, 10)
    assert set(zip(i.tolist(), j.tolist())) == set(zip(whole[0].tolist(), whole[1].tolist()))


def test_waiting_new_faces_add_up_and_an_explicit_request_covers_them(services):
    store = services.people_store
    store.request_regroup("owner-3", "t1", ["a", "b"])
    store.request_regroup("owner-3", "t2", ["b", "c"])  # a second photo indexed before the job ran
    request = store.regroup_request("owner-3")
    assert request["token"] == "t2" and sorted(request["new_faces"]) == ["a", "b", "c"] and not request.get("full")
    store.request_regroup("owner-3", "t3")  # POST /people/recluster: a full regrouping, which covers them
    assert store.regroup_request("owner-3")["full"] is True
    store.clear_regroup_request("owner-3", "t2")  # an older job's end leaves the newer request
    assert store.regroup_token("owner-3") == "t3"
