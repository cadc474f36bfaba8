"""Will the package run on its Lambda runtime? What a test against moto cannot see, read from the zip.

    python -m infrastructure.package_audit                    # package for the target runtime, then audit
    python -m infrastructure.package_audit --zip deployment.zip --runtime python3.11
    python -m infrastructure.package_audit --out benchmarks/results/package_audit.json   (the checks as JSON too)

Checks, each ``(name, ok, detail)``:
- the runtime: one AWS still supports (not past its deprecation date);
- every native library (``*.so``): the GLIBC symbol versions it needs are the runtime's glibc or older;
- every wheel's tags: its Python ABI is the runtime's (or abi3 / pure) and its manylinux glibc fits;
- the unzipped size within Lambda's limit, the headroom said;
- the optional functions of CPython's ``os`` that the code calls: the runtime's build has them, or
  the module checks for them (``hasattr(os, ...)``) and does without.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

Check = tuple[str, bool, str]


@dataclass(frozen=True)
class Runtime:
    """A Lambda runtime: its OS, its glibc and when it is deprecated."""

    os: str
    glibc: tuple[int, int]
    deprecated: date  # AWS's projected deprecation date


# AWS Lambda's runtimes table (docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html), as read
# for version 0.5.0 (2026-12): Amazon Linux 2 ships glibc 2.26, Amazon Linux 2023 glibc 2.34.
RUNTIMES = {
    "python3.11": Runtime("Amazon Linux 2", (2, 26), date(2026, 6, 30)),
    "python3.12": Runtime("Amazon Linux 2023", (2, 34), date(2028, 10, 31)),
    "python3.13": Runtime("Amazon Linux 2023", (2, 34), date(2029, 6, 30)),
}
UNZIPPED_LIMIT = 262_144_000  # bytes: 250 MB, the function and its layers unzipped
# CPython's os functions that exist only where its build found them: glibc ≥ 2.27 for memfd_create
# and copy_file_range, Linux ≥ 5.3 kernel headers for pidfd_open (Amazon Linux 2 builds have 4.14).
OPTIONAL_OS = {
    "memfd_create": {"Amazon Linux 2023"},
    "copy_file_range": {"Amazon Linux 2023"},
    "pidfd_open": {"Amazon Linux 2023"},
}
_GLIBC = re.compile(r"^GLIBC_(\d+)\.(\d+)")
_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_")
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def runtime_supported(runtime: str, today: date) -> Check:
    """Whether AWS still supports the runtime on ``today``."""
    known = RUNTIMES.get(runtime)
    if known is None:
        return ("runtime", False, f"{runtime} is not a runtime this audit knows")
    ok = today < known.deprecated
    state = "supported until" if ok else "deprecated since"
    return ("runtime", ok, f"{runtime} on {known.os} (glibc {_v(known.glibc)}), {state} {known.deprecated}")


def glibc_needed(elf_bytes: bytes) -> tuple[int, int] | None:
    """The newest GLIBC_x.y symbol version a shared library needs; None if it needs none."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    newest = None
    for section in ELFFile(io.BytesIO(elf_bytes)).iter_sections():
        if isinstance(section, GNUVerNeedSection):
            for _, auxiliaries in section.iter_versions():
                for aux in auxiliaries:
                    if match := _GLIBC.match(aux.name):
                        version = (int(match[1]), int(match[2]))
                        newest = max(newest or version, version)
    return newest


def native_libraries(archive: zipfile.ZipFile, runtime: str) -> Check:
    """Whether every native library of the package runs on the runtime's glibc."""
    limit = RUNTIMES[runtime].glibc
    names = [n for n in archive.namelist() if re.search(r"\.so(\.\d+)*$", n)]
    too_new = []
    for name in names:
        needed = glibc_needed(archive.read(name))
        if needed is not None and needed > limit:
            too_new.append(f"{name} needs GLIBC_{_v(needed)}")
    detail = f"{len(names)} libraries, all within glibc {_v(limit)}" if not too_new else "; ".join(too_new[:10])
    return ("native libraries", not too_new, detail)


def wheel_tags(archive: zipfile.ZipFile, runtime: str) -> Check:
    """Each installed wheel's ``Tag:`` lines (its ``.dist-info/WHEEL``) against the runtime."""
    abi = "cp" + runtime.removeprefix("python").replace(".", "")
    limit = RUNTIMES[runtime].glibc
    wrong, count = [], 0
    for name in archive.namelist():
        if not name.endswith(".dist-info/WHEEL"):
            continue
        count += 1
        tags = [
            line.split(":", 1)[1].strip()
            for line in archive.read(name).decode().splitlines()
            if line.startswith("Tag:")
        ]
        if not any(_tag_fits(tag, abi, limit) for tag in tags):
            wrong.append(f"{name.split('/')[0]}: {', '.join(tags)}")
    detail = f"{count} wheels fit {abi} on glibc {_v(limit)}" if not wrong else "; ".join(wrong[:10])
    return ("wheel tags", not wrong and count > 0, detail)


def _tag_fits(tag: str, abi: str, glibc: tuple[int, int]) -> bool:
    python, wheel_abi, platform = tag.split("-")
    if wheel_abi == "abi3":  # the stable ABI: built for this Python or an older one
        fits_python = python.startswith("cp") and int(python[3:] or 0) <= int(abi[3:]) and python[2] == abi[2]
    else:
        fits_python = wheel_abi in (abi, "none")
    if not fits_python:
        return False
    if platform == "any":
        return True
    if match := _MANYLINUX.match(platform):
        needs = (int(match[1]), int(match[2]))
    else:
        needs = next((v for prefix, v in _LEGACY.items() if platform.startswith(prefix + "_")), (99, 0))
    return platform.endswith("x86_64") and needs <= glibc


def unzipped_size(archive: zipfile.ZipFile) -> Check:
    """Whether the package fits Lambda's unzipped size limit."""
    size = sum(info.file_size for info in archive.infolist())
    headroom = UNZIPPED_LIMIT - size
    detail = f"{size / 1e6:.1f} MB of {UNZIPPED_LIMIT / 1e6:.1f} MB, headroom {headroom / 1e6:.1f} MB"
    return ("unzipped size", headroom > 0, detail)


def optional_os_functions(archive: zipfile.ZipFile, runtime: str) -> Check:
    """The code's calls of ``os.<optional function>``: present on the runtime, or checked for."""
    system = RUNTIMES[runtime].os
    problems, used = [], set()
    for name in archive.namelist():
        if not name.endswith(".py") or not (name == "app.py" or name.startswith("chalicelib/")):
            continue
        tree = ast.parse(archive.read(name))
        called = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
        } & set(OPTIONAL_OS)
        checked = {
            node.args[1].value
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "hasattr"
            and len(node.args) == 2
            and isinstance(node.args[1], ast.Constant)
        }
        used |= called
        problems += [
            f"{name}: os.{f} (missing on {system}, not checked for)"
            for f in sorted(called - checked)
            if system not in OPTIONAL_OS[f]
        ]
    detail = "; ".join(problems) if problems else f"uses {', '.join(sorted(used)) or 'none'}: each there or checked for"
    return ("optional os functions", not problems, detail)


def audit(archive_path: Path, runtime: str, today: date | None = None) -> list[Check]:
    """Every check of a deployment package against its runtime."""
    with zipfile.ZipFile(archive_path) as archive:
        checks = [runtime_supported(runtime, today or date.today())]
        if runtime in RUNTIMES:
            checks += [
                native_libraries(archive, runtime),
                wheel_tags(archive, runtime),
                optional_os_functions(archive, runtime),
            ]
        checks.append(unzipped_size(archive))
    return checks


def package(out: Path, runtime: str, stage: str = "prod") -> Path:
    """``chalice package`` for ``runtime`` (infrastructure.lambda_runtime); the zip's path."""
    from infrastructure.lambda_runtime import run_chalice

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # the package's ARNs only; nothing is called
    code = run_chalice(["package", "--stage", stage, str(out)], runtime)
    if code:
        raise SystemExit(f"chalice package failed ({code})")
    return out / "deployment.zip"


def _v(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def main(argv: list | None = None) -> int:
    """Audit the packages ``chalice package`` wrote."""
    from infrastructure.lambda_runtime import TARGET
    from infrastructure.preflight import report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zip", help="an existing package (default: package now)")
    parser.add_argument("--runtime", default=TARGET, help=f"the runtime it is for (default {TARGET})")
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--out", type=Path, help="also write the checks to this JSON file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        archive = Path(args.zip) if args.zip else package(Path(work) / "out", args.runtime, args.stage)
        checks = audit(archive, args.runtime)
    if args.out:
        rows = [{"check": name, "ok": ok, "detail": detail} for name, ok, detail in checks]
        args.out.write_text(json.dumps({"runtime": args.runtime, "stage": args.stage, "checks": rows}, indent=2) + "\n")
    return report(checks)


if __name__ == "__main__":
    sys.exit(main())
