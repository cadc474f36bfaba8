"""The API Lambda's cold start, from what ``chalice package`` builds (for this interpreter's runtime):
the unzipped size, and the time a fresh interpreter takes to import the handler module (``app``)
from the unzipped package, with the runtime's own packages (boto3 and its kin) beside it as the
Lambda Python runtime provides them.

    .venv/bin/python -m benchmarks.cold_start   → benchmarks/results/cold_start.json

Budgets (the performance issue): import ≤ 1 s, unzipped ≤ 150 MB. ``slowest_imports`` lists the
modules that cost most (``python -X importtime``, cumulative), where lazy imports could pay.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from benchmarks.common import write_results

ROOT = Path(__file__).resolve().parent.parent
# Provided by the Lambda Python runtime, not packaged.
RUNTIME_PACKAGES = ["boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py"]
IMPORT_BUDGET_S = 1.0
SIZE_BUDGET_MB = 150
RUNS = 7


def package(out: Path) -> Path:
    """Packaged for this interpreter's runtime, so that it can import it (the deployed package is the
    target runtime's: ``infrastructure.package_audit`` checks that one)."""
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
    runtime = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    command = [sys.executable, "-m", "infrastructure.lambda_runtime", "--runtime", runtime, "package"]
    subprocess.run([*command, "--stage", "prod", str(out)], cwd=ROOT, env=env, check=True)
    return out / "deployment.zip"


def lambda_like(work: Path, archive: Path) -> tuple[Path, dict]:
    """The unzipped task directory and the environment a fresh interpreter imports it with."""
    task, runtime = work / "task", work / "runtime"
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(task)
    runtime.mkdir()
    site = Path(__import__("boto3").__file__).parent.parent
    for name in RUNTIME_PACKAGES:
        (runtime / name).symlink_to(site / name)
    env = {
        "PATH": os.environ["PATH"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "COGNITO_USER_POOL_ARN": "arn:aws:cognito-idp:us-east-1:111122223333:userpool/us-east-1_test",
    }
    return task, dict(env, PYTHONPATH=f"{task}:{runtime}")


def run_python(task: Path, env: dict, code: str, *flags: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter that sees the package and the runtime's libraries only."""
    paths = env["PYTHONPATH"].split(":")
    result = subprocess.run(
        [sys.executable, "-I", "-S", *flags, "-c", f"import sys; sys.path[:0] = {paths!r}; {code}"],
        cwd=task,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the packaged code failed: {result.stderr}")
    return result


def import_seconds(task: Path, env: dict) -> float:
    code = "import time; t = time.perf_counter(); import app; print(time.perf_counter() - t)"
    return float(run_python(task, env, code).stdout.strip())


def slowest_imports(task: Path, env: dict, top: int = 10) -> list[dict]:
    """The libraries (top-level packages) that cost most to import, cumulative (``-X importtime``)."""
    report = run_python(task, env, "import app", "-X", "importtime").stderr
    costs: dict[str, int] = {}
    for line in report.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and "." not in match.group(2) and not match.group(2).startswith("_"):
            costs[match.group(2)] = max(costs.get(match.group(2), 0), int(match.group(1)))
    ranked = sorted(costs.items(), key=lambda item: -item[1])
    return [{"module": name, "cumulative_ms": round(us / 1000, 1)} for name, us in ranked[:top]]


def measure(archive: Path) -> dict:
    with tempfile.TemporaryDirectory() as work:
        task, env = lambda_like(Path(work), archive)
        size = sum(p.stat().st_size for p in task.rglob("*") if p.is_file())
        times = [import_seconds(task, env) for _ in range(RUNS)]
        return {
            "zip_mb": round(archive.stat().st_size / 2**20, 1),
            "unzipped_mb": round(size / 2**20, 1),
            "import_app_s": {"median": round(statistics.median(times), 3), "max": round(max(times), 3)},
            "within_budget": {
                "import": statistics.median(times) <= IMPORT_BUDGET_S,
                "size": size / 2**20 <= SIZE_BUDGET_MB,
            },
            "slowest_imports": slowest_imports(task, env),
        }


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        results = measure(package(Path(out)))
    results.update(runs=RUNS, budget={"import_s": IMPORT_BUDGET_S, "unzipped_mb": SIZE_BUDGET_MB})
    write_results("cold_start.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
