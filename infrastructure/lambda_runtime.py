"""The Lambda runtime the functions are deployed on, and Chalice run for it from any Python.

    python -m infrastructure.lambda_runtime deploy --stage prod
    python -m infrastructure.lambda_runtime package --stage prod OUT_DIR

Chalice gives the functions the runtime of the interpreter that runs it (``chalice deploy`` from
Python 3.11 makes python3.11 Lambdas: Amazon Linux 2, glibc 2.26, past its deprecation). This runs
Chalice's own command line with the runtime set to ``TARGET`` instead; Chalice then downloads the
wheels for that runtime from PyPI, whatever the local interpreter. ``chalice`` itself, run from a
Python whose runtime is not supported here, refuses (``app.py`` checks as Chalice imports it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from chalicelib import LAMBDA_RUNTIMES

TARGET = LAMBDA_RUNTIMES[-1]


def run_chalice(args: list[str], runtime: str = TARGET) -> int:
    """Chalice's command line (``deploy``, ``package`` ...), building for ``runtime``."""
    from botocore.exceptions import NoRegionError
    from chalice import cli
    from chalice.config import Config
    from chalice.deploy.packager import PipRunner

    Config.lambda_python_version = property(lambda self: runtime)  # type: ignore[assignment,method-assign]
    PipRunner._execute = _for_the_wheels_abi(PipRunner._execute)  # type: ignore[method-assign]
    try:
        cli.cli.main(args=args, prog_name="chalice", obj={}, standalone_mode=False)
    except SystemExit as exc:
        return int(exc.code or 0)
    except NoRegionError:
        print("no AWS region: export AWS_DEFAULT_REGION (or set it in ~/.aws/config)", file=sys.stderr)
        return 2
    return 0


def _for_the_wheels_abi(execute: Callable) -> Callable:
    """Chalice asks pip for the runtime's binary wheels by ABI alone (``--abi cp313``), and pip
    then takes the local interpreter's version for the wheel's Python tag: from Python 3.11 no
    cp313 wheel ever matches. The ABI's version, said too, makes them match."""
    if getattr(execute, "for_the_wheels_abi", False):
        return execute

    def run(self, command: str, arguments: list[str], *rest: Any, **named: Any) -> Any:
        if command == "download" and "--abi" in arguments:
            abi = arguments[arguments.index("--abi") + 1]
            arguments = [*arguments, "--python-version", abi.removeprefix("cp")]
        return execute(self, command, arguments, *rest, **named)

    run.for_the_wheels_abi = True  # type: ignore[attr-defined]
    return run


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    runtime = TARGET
    if args[:1] == ["--runtime"]:  # tests package for the local interpreter too (its imports)
        runtime, args = args[1], args[2:]
    return run_chalice(args, runtime)


if __name__ == "__main__":
    raise SystemExit(main())
