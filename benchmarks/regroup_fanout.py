"""A lifetime album's regrouping fanned out (#42): what one graph worker costs at 100,000, 300,000
and 1,000,000 faces with 1, 8 and 32 workers, what the one aggregation step costs, and the wall time
and Lambda GB-seconds that follow.

The faces are ``people_speed``'s synthetic album (1153-d, people of 1 to 60 faces, two faces a
photo), written once to ``.cache/benchmarks``. Each measurement runs in a fresh process (its peak
memory is its own) on this machine's 2 cores, which stand for one worker: a block is the rows one of
``w`` workers gets, scored against every face, the columns read in the worker's chunks
(``graph_fanout.CHUNK_BYTES``) from the file as the worker reads them from S3 (S3's transfer is not
in these figures). The smallest block (32 workers) is measured at each size; the others follow from
its rate (scores a second), marked so, except one worker at 100,000 faces: the whole graph,
measured. The aggregation step merges the blocks' edges and agglomerates (``grouping.agglomerate``,
the bundle's parameters).

At 1,000,000 faces the whole exact graph (10^12 scores) is beyond this machine, so the aggregation
step is measured on a *local graph*: each face's k best among the faces of its stretch of the album
(its own people) and a stretch of 8,000 others. At 100,000 faces the same construction is compared
with the exact graph (edges in common, and BCubed of the local graph's grouping against the exact
graph's), so the stand-in is checked where both fit.

    .venv/bin/python -m benchmarks.regroup_fanout [--sizes 100000 300000 1000000]
        → benchmarks/results/regroup_fanout.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import write_results
from benchmarks.people_speed import DIM, synthetic_album, synthetic_people
from chalicelib import graph_fanout
from chalicelib.grouping import GroupingParams, agglomerate, knn_edges, nearest_rows, undirected
from gpu_endpoint.bundle import DEFAULT_DIR, Manifest
from model_factory.calibration import grouping_scores

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "benchmarks"
WORKERS = (1, 8, 32)
LAMBDA_GB = 3.008  # the graph_rows and group_people functions' memory
LOCAL_STRETCH, LOCAL_OTHERS = 4_000, 8_000  # the 1M aggregation's local graph (see the docstring)


def album(n: int) -> Path:
    """The synthetic album of ``n`` faces on disk (vectors.f32, stats.npy, photos.npy), made once, in
    a child process: a process's peak memory includes its parent's at the fork, so the parent stays small."""
    folder = CACHE / f"fanout_album_{n}"
    if not (folder / "photos.npy").exists():
        in_child(_write_album, folder, n)
    return folder


def _write_album(folder: Path, n: int, out) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    vectors, stats, photos = synthetic_album(n)
    vectors.tofile(folder / "vectors.f32")
    np.save(folder / "stats.npy", stats)
    np.save(folder / "photos.npy", np.array(photos))
    out.put(None)


def _rows(folder: Path, start: int, stop: int) -> np.ndarray:
    """Rows of the album's vectors read into memory, as a worker's ranged GET gives them."""
    count = (stop - start) * DIM
    return np.fromfile(folder / "vectors.f32", np.float32, count, offset=4 * DIM * start).reshape(-1, DIM)


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def block(folder: Path, n: int, start: int, stop: int, k: int, out) -> None:
    """One worker's block (in a fresh process): its rows' k best among every face, columns streamed."""
    started = time.perf_counter()
    stats = np.load(folder / "stats.npy")
    chunk = max(1, graph_fanout.CHUNK_BYTES // (4 * DIM))
    columns = ((a, _rows(folder, a, min(n, a + chunk)), stats[a : a + chunk]) for a in range(0, n, chunk))
    i, j, s = nearest_rows(_rows(folder, start, stop), stats[start:stop], start, columns, k)
    out.put({"seconds": time.perf_counter() - started, "peak_rss_mb": _peak_mb(), "edges": int(len(i))})


def local_graph(folder: Path, n: int, k: int) -> tuple[np.ndarray, ...]:
    """Each face's k best among its stretch of the album and a stretch of others (the docstring)."""
    stats = np.load(folder / "stats.npy")
    parts = []
    for start in range(0, n, LOCAL_STRETCH):
        stop = min(n, start + LOCAL_STRETCH)
        other = (stop + n // 2) % max(1, n - LOCAL_OTHERS)  # far from this stretch
        columns = [(start, _rows(folder, start, stop), stats[start:stop])]
        if other + LOCAL_OTHERS <= start or other >= stop:
            columns.append((other, _rows(folder, other, other + LOCAL_OTHERS), stats[other : other + LOCAL_OTHERS]))
        parts.append(nearest_rows(_rows(folder, start, stop), stats[start:stop], start, columns, k))
    return undirected(*(np.concatenate(column) for column in zip(*parts)))


def aggregate(folder: Path, n: int, params: dict, local: bool, out) -> None:
    """The aggregation step (in a fresh process): the graph's edges merged, then agglomerated. The
    graph is built first (exactly, or locally); its time and memory are reported apart."""
    grouping = GroupingParams(**params)
    started = time.perf_counter()
    if local:
        edges = local_graph(folder, n, grouping.k)
    else:
        vectors = _rows(folder, 0, n)
        edges = knn_edges(vectors, np.load(folder / "stats.npy"), grouping.k)
        del vectors
    graph_seconds, graph_peak = time.perf_counter() - started, _peak_mb()
    photos = np.load(folder / "photos.npy").tolist()
    directed = (np.repeat(edges[0], 2), np.repeat(edges[1], 2), np.repeat(edges[2], 2))
    started = time.perf_counter()
    merged = undirected(*directed)  # what the step does with the blocks' directed edges
    labels = agglomerate(n, merged, photos, grouping.threshold, grouping.min_faces, grouping.linkage)
    out.put(
        {
            "graph": "local" if local else "exact",
            "graph_seconds": round(graph_seconds, 1),
            "graph_peak_rss_mb": graph_peak,
            "edges": int(len(merged[0])),
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": _peak_mb(),
            "people": int(labels.max() + 1),
            "labels": labels if n <= 100_000 else None,
            "edge_pairs": merged[0] * n + merged[1] if n <= 100_000 else None,
        }
    )


def in_child(target, *args) -> dict:
    """``target(*args, queue)`` in a fresh process; what it put."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def measure_size(n: int, k: int, whole_graph_seconds: float | None) -> dict:
    """One worker's block at each worker count: the smallest block measured (its rate gives the
    others), the whole graph's time where the aggregation step built it exactly (one worker)."""
    folder = album(n)
    workers = sorted(WORKERS, reverse=True)
    rows = -(-n // workers[0])
    measured = in_child(block, folder, n, 0, rows, k)
    rate = float(rows) * n / measured["seconds"]
    row: dict = {"faces": n, "scores_per_second": round(rate), "workers": {}}
    for count in workers:
        rows = -(-n // count)
        entry = {"block_rows": rows, "block_seconds": round(float(rows) * n / rate, 1), "measured": False}
        if count == workers[0]:
            entry |= {"block_seconds": round(measured["seconds"], 1), "measured": True}
            entry["peak_rss_mb"] = measured["peak_rss_mb"]
        elif count == 1 and whole_graph_seconds is not None:
            entry |= {"block_seconds": whole_graph_seconds, "measured": True, "as": "the whole graph, one process"}
        row["workers"][str(count)] = entry
        print(n, count, json.dumps(entry), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    args = parser.parse_args(argv)
    params = Manifest.load(DEFAULT_DIR).grouping
    if params is None:
        print("the bundle has no grouping calibration: rebuild it (./dev setup)", file=sys.stderr)
        return 1
    k = int(params["k"])
    steps = {}
    for n in args.sizes:
        exact = n <= 100_000
        result = in_child(aggregate, album(n), n, params, not exact)
        if exact:  # the local graph checked against the exact one where both fit
            local = in_child(aggregate, album(n), n, params, True)
            truth = synthetic_people(n).astype(str)
            photos = np.load(album(n) / "photos.npy")
            everyone = np.ones(n, bool)
            common = np.isin(result["edge_pairs"], local["edge_pairs"]).mean()
            check = {
                "exact_edges_in_local_graph": round(float(common), 4),
                "exact": grouping_scores(result["labels"], truth, photos, everyone),
                "local": grouping_scores(local["labels"], truth, photos, everyone),
                "local_graph_seconds": local["graph_seconds"],
                "local_aggregation_seconds": local["seconds"],
            }
            result["local_graph_check"] = check
            print(n, "check", json.dumps(check), flush=True)
        result.pop("labels"), result.pop("edge_pairs")
        steps[str(n)] = result
        print(n, "aggregation", json.dumps(result), flush=True)
    sizes = []
    for n in args.sizes:
        step = steps[str(n)]
        sizes.append(measure_size(n, k, step["graph_seconds"] if step["graph"] == "exact" else None))
    for row in sizes:
        step = steps[str(row["faces"])]
        for workers, entry in row["workers"].items():
            wall = entry["block_seconds"] + step["seconds"]
            entry["wall_seconds"] = round(wall, 1)
            gb_s = LAMBDA_GB * (entry["block_seconds"] * int(workers) + step["seconds"])
            entry["lambda_gb_seconds_per_million_faces"] = round(gb_s * 1_000_000 / row["faces"])
    write_results(
        "regroup_fanout.json",
        {
            "cpu": "this machine (2 cores) stands for one worker; S3 transfer not included",
            "params": params,
            "chunk_bytes": graph_fanout.CHUNK_BYTES,
            "sizes": sizes,
            "aggregation": steps,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
