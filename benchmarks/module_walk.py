"""How far a reader travels to follow one request: the project's modules a warm ``POST /search``
enters, in the order its calls enter them, through the app in process (Chalice's local gateway,
token check, routing, middleware) on the local stack, with an album grouped into people (the
people-aware path every grouped album takes).

    .venv/bin/python -m benchmarks.module_walk   → benchmarks/results/module_walk.json

``modules``: the distinct modules of this project entered. ``returns``: calls into a module entered
before and left since (a reader turning back to a file already read). Modules of libraries are not
counted, nor are calls within one module. The walk is recorded with ``sys.setprofile``, so it counts
what runs, not what the source could run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.api_search import group_as_identities, key_body, local_album
from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = (ROOT / ".venv", ROOT / "benchmarks")


def module_of(filename: str) -> str | None:
    """The project module a code object belongs to (None for libraries and the benchmark itself)."""
    path = Path(filename)
    if not path.is_absolute() or ROOT not in path.parents or any(o in path.parents for o in OUTSIDE):
        return None
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


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
    """The walk's measures: distinct modules, returns, and the walk itself."""
    return {"modules": len(set(entered)), "returns": len(entered) - len(set(entered)), "walk": entered}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=300)
    args = parser.parse_args(argv)

    from chalice.test import Client

    import app as app_module

    with local_album(args.photos) as album, Client(app_module.app) as client:
        group_as_identities(album.services, album.sub, album.faces, album.people)

        def search():
            body = json.dumps(key_body(album.keys[1]))
            answer = client.http.post("/search", headers=album.headers, body=body)
            assert answer.status_code == 200, answer.body

        search()  # warm: the served model asked, the vectors loaded
        results = {"request": "POST /search, an album face of a grouped person, warm", **summary(walk(search))}
    write_results("module_walk.json", results)
    print({k: v for k, v in results.items() if k != "walk"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
