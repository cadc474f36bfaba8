"""The project's own metadata: one list of the Lambda's runtime pins, and an installable CLI."""

import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirement_lines(path: Path) -> list:
    return [
        line.split("#")[0].strip()
        for line in path.read_text().splitlines()
        if line.split("#")[0].strip() and not line.startswith("-r")
    ]


def test_the_lambda_runtime_list_is_the_projects_dependency_list():
    """requirements.txt is what Chalice packages; pyproject.toml declares the same pins."""
    assert sorted(requirement_lines(ROOT / "requirements.txt")) == sorted(PROJECT["dependencies"])


def test_dev_pins_agree_with_the_optional_groups():
    pins = {line.split("==")[0].lower(): line for line in requirement_lines(ROOT / "requirements-dev.txt")}
    for group in ("serve", "train", "dev"):
        for requirement in PROJECT["optional-dependencies"][group]:
            name = requirement.split("==")[0].lower()
            if name in pins:
                assert pins[name] == requirement, (group, requirement)


def test_the_console_script_points_at_the_cli():
    module, function = PROJECT["scripts"]["memstudio"].split(":")
    assert callable(getattr(import_module(module), function))


@pytest.mark.slow
def test_pip_builds_a_wheel_with_the_memstudio_command(tmp_path):
    # A copy of what the wheel is built from: setuptools writes build/ and *.egg-info where it builds.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("chalicelib", "memstudio", "gpu_endpoint", "training", "local_stack", "infrastructure"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("memory_studio-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "memstudio = memstudio.__main__:main" in entry_points
    assert "chalicelib/ops/atlas_vector_index.json" in names and "gpu_endpoint/bundle.py" in names
    assert not any(n.startswith("tests/") for n in names)


def test_a_plain_chalice_deploy_from_an_unsupported_python_refuses():
    from app import runtime_refusal

    refusal = runtime_refusal((3, 11, 9), ["/x/.venv/bin/chalice", "deploy", "--stage", "prod"])
    assert "would deploy python3.11 Lambdas" in refusal
    assert "python -m infrastructure.lambda_runtime deploy --stage prod" in refusal
    assert "python3.11" in runtime_refusal((3, 11, 9), ["chalice", "package", "--stage", "prod", "out"])
    assert runtime_refusal((3, 13, 1), ["chalice", "deploy"]) is None  # Python 3.13 deploys python3.13
    assert runtime_refusal((3, 11, 9), ["chalice", "local"]) is None
    assert runtime_refusal((3, 11, 9), ["-m", "infrastructure.lambda_runtime", "deploy"]) is None
    assert runtime_refusal((3, 11, 9), []) is None  # the Lambda runtime's own import


def test_chalice_refuses_before_it_deploys_anything(tmp_path):
    if sys.version_info[:2] in ((3, 12), (3, 13)):
        pytest.skip("this Python is a supported Lambda runtime")
    chalice = Path(sys.executable).with_name("chalice")
    result = subprocess.run(
        [str(chalice), "package", "--stage", "prod", str(tmp_path / "out")],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "python -m infrastructure.lambda_runtime package" in result.stderr
    assert not (tmp_path / "out").exists()
