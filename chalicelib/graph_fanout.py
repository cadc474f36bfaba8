"""A large album's nearest-neighbour graph, built by a fan-out of workers (SQS messages, S3 objects).

From ``fanout_faces`` faces (and with a graph queue configured) a regrouping does not build the
graph itself: it writes the faces' vectors and cohort statistics to S3 once, under
``graphs/{owner}/{token}/``, sends the graph queue one message per block of rows, and returns. Each
worker (the ``graph_rows`` function) reads its rows, streams every face's vectors in chunks by
ranged GETs, so its memory stays flat whatever the album's size, keeps its rows' k best neighbours
(``grouping.nearest_rows``) and writes them as one object. The worker that finds every block
written sends the people-jobs queue ``{"regroup", "token", "graph": true}``; that job merges the
blocks and agglomerates (``People.regroup_from_graph``), then removes the job's objects.

Why an SQS fan-out rather than Step Functions' Distributed Map: the blocks are equal, independent
and few (at most ``workers``), so they need no state machine; SQS retries a failed block alone and
moves it to a dead-letter queue after maxReceiveCount, as for every other job here; Chalice
deploys the worker as it deploys the other queue consumers; and the local stack runs the very same
handler on moto's SQS with several worker processes, where moto cannot run a state machine's
Lambda tasks. The completion count is the blocks' objects (S3 lists are strongly consistent): two
workers finishing together may both announce the end, and the first announcement applied removes
the job, so the second finds nothing to do.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from chalicelib.grouping import nearest_rows, undirected
from chalicelib.stores.object_storage import GRAPHS, ObjectStorage

if TYPE_CHECKING:
    from types_boto3_sqs import SQSClient

logger = logging.getLogger(__name__)

MIN_BLOCK_FACES = 2_000  # fewer rows a worker would cost more in start-up and reads than it saves
CHUNK_BYTES = 256 * 1024 * 1024  # the columns a worker holds at once (vectors of 1153 float32: ~58,000 faces)


@dataclass(frozen=True)
class GraphJob:
    """What a fanned-out graph is built from (its ``job.json``)."""

    owner: str
    token: str
    model_version: str
    faces: int
    dim: int
    k: int
    blocks: tuple[tuple[int, int], ...]


class GraphFanout:
    """Start a fanned-out graph, build one block of it (the worker), read the finished graph."""

    def __init__(
        self,
        storage: ObjectStorage,
        sqs: SQSClient | None,
        graph_queue_url: str | None,
        jobs_queue_url: str | None,
        fanout_faces: int,
        workers: int,
    ):
        self.storage, self.sqs = storage, sqs
        self.graph_queue_url, self.jobs_queue_url = graph_queue_url, jobs_queue_url
        self.fanout_faces, self.workers = fanout_faces, max(1, workers)

    def wanted(self, faces: int) -> bool:
        """Whether an album of ``faces`` faces gets a fanned-out graph (both queues configured)."""
        return bool(self.sqs and self.graph_queue_url and self.jobs_queue_url) and faces >= self.fanout_faces

    # The regrouping job --------------------------------------------------------------
    def start(
        self,
        owner: str,
        token: str,
        model_version: str,
        face_ids: list[str],
        vectors: np.ndarray,
        stats: np.ndarray,
        k: int,
    ) -> dict:
        """Write the job's inputs and send one message per block of rows; what was started."""
        assert self.sqs is not None and self.graph_queue_url
        vectors = np.ascontiguousarray(vectors, np.float32)
        n, dim = vectors.shape
        count = min(self.workers, max(1, -(-n // MIN_BLOCK_FACES)))
        edges = np.linspace(0, n, count + 1).round().astype(int).tolist()
        blocks = tuple(zip(edges[:-1], edges[1:]))
        prefix = graph_prefix(owner, token)
        self.clear(owner, token)  # a retried job starts from nothing
        self.storage.put_bytes(prefix + "vectors.f32", vectors.tobytes())
        self.storage.put_bytes(prefix + "stats.f32", np.ascontiguousarray(stats, np.float32).tobytes())
        self.storage.put_json(prefix + "faces.json", face_ids)
        job = {"model_version": model_version, "faces": n, "dim": dim, "k": k, "blocks": blocks}
        self.storage.put_json(prefix + "job.json", job)  # last: a worker needs all of it
        for start, stop in blocks:
            body = {"graph_rows": token, "owner": owner, "start": start, "stop": stop}
            self.sqs.send_message(QueueUrl=self.graph_queue_url, MessageBody=json.dumps(body))
        logger.info("graph fanned out", extra={"user": owner, "faces": n, "blocks": len(blocks)})
        return {"status": "fanned_out", "faces": n, "blocks": len(blocks)}

    def job(self, owner: str, token: str) -> GraphJob | None:
        """The job's description; None once it is removed (applied, or expired). Found by listing:
        a missing object's GET is refused (403), not answered 404, to a role that may not list it."""
        key = graph_prefix(owner, token) + "job.json"
        if key not in self.storage.list_keys(key):
            return None
        job = json.loads(self.storage.read(key))
        blocks = tuple((int(a), int(b)) for a, b in job["blocks"])
        return GraphJob(owner, token, job["model_version"], job["faces"], job["dim"], job["k"], blocks)

    def written(self, job: GraphJob) -> list[str]:
        """The keys of the blocks written so far."""
        return sorted(self.storage.list_keys(graph_prefix(job.owner, job.token) + "edges/"))

    def finished(self, job: GraphJob) -> bool:
        """Whether every block of the job is written."""
        return len(self.written(job)) == len(job.blocks)

    def graph(self, job: GraphJob) -> tuple[list[str], tuple[np.ndarray, ...]]:
        """The finished graph: the faces' ids and the undirected edges (i < j, score) between them."""
        prefix = graph_prefix(job.owner, job.token)
        face_ids = json.loads(self.storage.read(prefix + "faces.json"))
        parts = []
        for key in self.written(job):
            with np.load(io.BytesIO(self.storage.read(key))) as part:
                parts.append((part["i"].astype(np.int64), part["j"].astype(np.int64), part["s"]))
        i, j, s = (np.concatenate(column) for column in zip(*parts))
        return face_ids, undirected(i, j, s)

    def clear(self, owner: str, token: str) -> None:
        """Remove the job's objects (a bucket lifecycle rule removes any left after a day)."""
        self.storage.delete_keys(self.storage.list_keys(graph_prefix(owner, token)))

    # The worker ----------------------------------------------------------------------
    def rows(self, message: dict) -> str:
        """One block of rows (a graph-queue message): its edges written; the end announced by the
        worker that finds every block written. Returns what happened."""
        owner, token = message.get("owner"), message.get("graph_rows")
        start, stop = message.get("start"), message.get("stop")
        if not (isinstance(owner, str) and isinstance(token, str) and isinstance(start, int) and isinstance(stop, int)):
            return "ignored"
        job = self.job(owner, token)
        if job is None or (start, stop) not in job.blocks:
            return "gone"  # applied or expired: a late redelivery
        prefix = graph_prefix(owner, token)
        key = f"{prefix}edges/{start:010d}.npz"
        if key not in self.written(job):  # a redelivered block is not built twice
            stats = np.frombuffer(self.storage.read(prefix + "stats.f32"), np.float32).reshape(-1, 2)
            rows = self._vectors(job, start, stop)
            i, j, s = nearest_rows(rows, stats[start:stop], start, self._columns(job, stats), job.k)
            out = io.BytesIO()
            np.savez(out, i=i.astype(np.int32), j=j.astype(np.int32), s=s.astype(np.float32))
            self.storage.put_bytes(key, out.getvalue())
        if not self.finished(job):
            return "block written"
        assert self.sqs is not None and self.jobs_queue_url
        body = {"regroup": owner, "token": token, "graph": True}
        self.sqs.send_message(QueueUrl=self.jobs_queue_url, MessageBody=json.dumps(body))
        return "graph finished"

    def _columns(self, job: GraphJob, stats: np.ndarray):
        """Every face's vectors, chunk by chunk (a generator: one chunk in memory at a time)."""
        chunk = max(1, CHUNK_BYTES // (4 * job.dim))
        for start in range(0, job.faces, chunk):
            stop = min(job.faces, start + chunk)
            yield start, self._vectors(job, start, stop), stats[start:stop]

    def _vectors(self, job: GraphJob, start: int, stop: int) -> np.ndarray:
        """Rows ``start…stop`` of the job's vectors, by one ranged GET."""
        row = 4 * job.dim
        data = self.storage.read_range(graph_prefix(job.owner, job.token) + "vectors.f32", start * row, stop * row)
        return np.frombuffer(data, np.float32).reshape(stop - start, job.dim)


def graph_prefix(owner: str, token: str) -> str:
    """Where one fanned-out graph's objects live."""
    return f"{GRAPHS}/{owner}/{token}/"
