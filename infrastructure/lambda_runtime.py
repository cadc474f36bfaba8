"""The Lambda runtime the functions are deployed on, and Chalice run for it from any Python.

    python -m infrastructure.lambda_runtime deploy --stage prod
    python -m infrastructure.lambda_runtime package --stage prod OUT_DIR

Chalice gives the functions the runtime of the interpreter that runs it (``chalice deploy`` from
Python 3.11 makes python3.11 Lambdas: Amazon Linux 2, glibc 2.26, past its deprecation). This runs
Chalice's own command line with the runtime set to ``TARGET`` instead; Chalice then downloads the
wheels for that runtime from PyPI, whatever the local interpreter. ``chalice`` itself, run from a
Python whose runtime is not supported here, refuses (``app.py`` checks as Chalice imports it).

The API's definition also gets API Gateway's own error answers (``infrastructure.gateway_responses``),
for the stage's CORS origin, which ``infrastructure.preflight`` must accept; and a deploy ends by
setting the functions' log retention (``infrastructure.log_retention``) and the stage's throttling
(``infrastructure.throttling``), which Chalice cannot express.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalicelib import LAMBDA_RUNTIMES
from infrastructure import deployed, gateway_responses, log_retention, preflight, throttling

TARGET = LAMBDA_RUNTIMES[-1]
COMMANDS = ("deploy", "package")  # what the runbook runs through here; any other Chalice command passes too


def run_chalice(args: list[str], runtime: str = TARGET) -> int:
    """Chalice's command line (``deploy``, ``package`` ...), building for ``runtime``."""
    import click
    from botocore.exceptions import NoRegionError
    from chalice import cli
    from chalice.config import Config
    from chalice.deploy.packager import PipRunner
    from chalice.deploy.swagger import SwaggerGenerator

    stage = _option(args, "--stage", "dev")
    chalice_dir = Path(_option(args, "--project-dir", ".")) / ".chalice"
    environment = deployed.read_config(chalice_dir)["stages"][stage]["environment_variables"]
    name, ok, detail = preflight.cors_origin(stage, environment)
    if not ok:
        print(f"{name}: {detail}", file=sys.stderr)
        return 2
    Config.lambda_python_version = property(lambda self: runtime)  # type: ignore[assignment,method-assign]
    PipRunner._execute = _for_the_wheels_abi(PipRunner._execute)  # type: ignore[method-assign]
    origin = environment["CORS_ALLOW_ORIGIN"]
    SwaggerGenerator.generate_swagger = _with_gateway_responses(SwaggerGenerator.generate_swagger, origin)  # type: ignore[method-assign]
    try:
        cli.cli.main(args=args, prog_name="chalice", obj={}, standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            return int(exc.code)
    except click.exceptions.Abort:  # Chalice said why, then aborted
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except NoRegionError:
        print("no AWS region: export AWS_DEFAULT_REGION (or set it in ~/.aws/config)", file=sys.stderr)
        return 2
    if args[:1] == ["deploy"]:
        import boto3

        groups = log_retention.apply(
            boto3.client("logs"), deployed.function_names(stage, chalice_dir), log_retention.DAYS[stage]
        )
        print(f"{len(groups)} log groups keep {log_retention.DAYS[stage]} days")
        return throttling.main(["--stage", stage])
    return 0


def _option(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args[:-1] else default


def _with_gateway_responses(generate: Callable, origin: str) -> Callable:
    """Chalice's API definition, and API Gateway's own error answers in it."""
    original = getattr(generate, "__wrapped__", generate)  # patched once, whatever the calls

    def generate_swagger(self, app, rest_api=None):
        api = original(self, app, rest_api)
        api[gateway_responses.EXTENSION] = gateway_responses.definitions(origin)
        return api

    generate_swagger.__wrapped__ = original  # type: ignore[attr-defined]
    return generate_swagger


def _for_the_wheels_abi(execute: Callable) -> Callable:
    """Chalice asks pip for the runtime's binary wheels by ABI alone (``--abi cp313``), and pip
    then takes the local interpreter's version for the wheel's Python tag: from Python 3.11 no
    cp313 wheel ever matches. The ABI's version, said too, makes them match."""
    original = getattr(execute, "__wrapped__", execute)

    def run(self, command: str, arguments: list[str], *rest: Any, **named: Any) -> Any:
        if command == "download" and "--abi" in arguments:
            abi = arguments[arguments.index("--abi") + 1]
            arguments = [*arguments, "--python-version", abi.removeprefix("cp")]
        return original(self, command, arguments, *rest, **named)

    run.__wrapped__ = original  # type: ignore[attr-defined]
    return run


def main(argv: list[str] | None = None) -> int:
    """Run ``chalice`` for a stage with the packaging and runtime checks around it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip() + f"\n\nCommands: {', '.join(COMMANDS)} (Chalice's own options after them).")
        return 0 if args else 2
    runtime = TARGET
    if args[:1] == ["--runtime"]:  # tests package for the local interpreter too (its imports)
        runtime, args = args[1], args[2:]
    return run_chalice(args, runtime)


if __name__ == "__main__":
    raise SystemExit(main())
