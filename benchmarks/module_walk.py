"""How far a reader travels to follow one request: the project's modules a warm ``POST /search``
enters, in the order its calls enter them, through the app in process (Chalice's local gateway,
token check, routing, middleware) on the local stack, with an album grouped into people (the
people-aware path every grouped album takes).

    .venv/bin/python -m benchmarks.module_walk   → benchmarks/results/module_walk.json

``modules``: the distinct modules of this project entered. ``returns``: distinct moves back into a
module entered before and left since (a reader turning back to a file already read; a loop repeating
a move counts it once). Modules of libraries are not
counted, nor is the local stack's embedded store (the cloud's path runs the pymongo driver there), nor
are calls within one module. The walk is recorded with ``sys.setprofile``, so it counts
what runs, not what the source could run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import requests

from benchmarks.api_search import group_as_identities, key_body, local_album
from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = (ROOT / ".venv", ROOT / "benchmarks")
# The local stack's stand-in for the pymongo driver (Atlas in the cloud): not counted, as a library is not.
LOCAL_ONLY = {"chalicelib.stores.embedded"}


def module_of(filename: str) -> str | None:
    """The project module a code object belongs to (None for libraries and the benchmark itself)."""
    path = Path(filename)
    if not path.is_absolute() or ROOT not in path.parents or any(o in path.parents for o in OUTSIDE):
        return None
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return None if module in LOCAL_ONLY else module


def walk(call) -> list[str]:
    """The project modules entered by ``call()``'s calls, in order, a module repeated only after
    another was entered between."""
    entered: list[str] = []

    def profile(frame, event, arg):
        if event == "call" and (module := module_of(frame.f_code.co_filename)) and entered[-1:] != [module]:
            entered.append(module)

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return entered


def summary(entered: list[str]) -> dict:
    """The walk's measures: the modules in the order first entered, and the distinct moves back into
    a module entered before (a loop that repeats a move counts it once: a reader reads it once)."""
    seen: set[str] = set()
    back: list[tuple[str, str]] = []
    for came_from, module in zip(entered, entered[1:]):
        seen.add(came_from)
        if module in seen and (came_from, module) not in back:
            back.append((came_from, module))
    order = list(dict.fromkeys(entered))
    return {"modules": len(order), "returns": len(back), "order": order, "moves_back": [" → ".join(m) for m in back]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=300)
    args = parser.parse_args(argv)

    from chalice.test import Client

    with local_album(args.photos) as album:
        import app as app_module  # after the stack's settings are in the environment

        group_as_identities(album.services, album.sub, album.faces, album.people)
        # Chalice's test client sets the stage's environment around each request: the services
        # read their settings once, first, over HTTP, as the served API does.
        requests.post(f"{album.api_url}/search", json=key_body(album.keys[0]), headers=album.headers, timeout=120)
        client = Client(app_module.app)

        def search():
            body = json.dumps(key_body(album.keys[1]))
            answer = client.http.post("/search", headers=album.headers, body=body)
            assert answer.status_code == 200, answer.body

        search()  # warm: the served model asked, the vectors loaded
        results = {"request": "POST /search, an album face of a grouped person, warm", **summary(walk(search))}
    write_results("module_walk.json", results)
    print({k: results[k] for k in ("modules", "returns")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
