"""`chalice package` builds for the target runtime, deploys what functions/catalog.json lists, passes
the target-platform audit, and its zip imports on its own."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from benchmarks.cold_start import lambda_like, run_python
from chalicelib.edge.api_docs import SWAGGER_FILES
from infrastructure import package_audit
from infrastructure.lambda_runtime import TARGET
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
LOCAL_RUNTIME = f"python{sys.version_info[0]}.{sys.version_info[1]}"


def chalice_package(out: Path, runtime: str) -> Path:
    """``chalice package --stage prod`` for ``runtime``, as the runbook runs it."""
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "infrastructure.lambda_runtime",
            "--runtime",
            runtime,
            "package",
            "--stage",
            "prod",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "could not install" not in (result.stdout + result.stderr).lower(), result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """What is deployed: built for the target runtime (its wheels come from PyPI)."""
    return chalice_package(tmp_path_factory.mktemp("package"), TARGET)


@pytest.fixture(scope="module")
def local_package(tmp_path_factory):
    """The same, built for this interpreter, so that a fresh one can import it here."""
    return chalice_package(tmp_path_factory.mktemp("local-package"), LOCAL_RUNTIME)


def test_the_package_passes_the_target_platform_audit(package):
    checks = package_audit.audit(package / "deployment.zip", TARGET)
    assert [name for name, ok, _ in checks] == [
        "runtime",
        "native libraries",
        "wheel tags",
        "optional os functions",
        "unzipped size",
    ]
    assert all(ok for _, ok, _ in checks), checks
    assert "memfd_create" in dict((n, d) for n, _, d in checks)["optional os functions"]  # the decoder's, found


def test_template_deploys_exactly_the_catalogue(package):
    template = json.loads((package / "sam.json").read_text())
    functions = {name for name, res in template["Resources"].items() if res["Type"] == "AWS::Serverless::Function"}
    catalog = json.loads((ROOT / "functions" / "catalog.json").read_text())["functions"]
    assert functions == set(catalog)
    default_runtime = template.get("Globals", {}).get("Function", {}).get("Runtime")
    for name, entry in catalog.items():
        properties = template["Resources"][name]["Properties"]
        assert properties["Handler"] == entry["handler"]
        assert properties.get("Runtime", default_runtime) == TARGET, name
    paths = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    deployed_routes = {
        f"{method.upper()} {path}" for path, methods in paths.items() for method in methods if method != "options"
    }
    assert deployed_routes == set(catalog["APIHandler"]["routes"])
    # API Gateway's own error answers travel in the API's definition, for the stage's origin.
    from infrastructure.gateway_responses import EXTENSION, definitions

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["prod"]
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert body[EXTENSION] == definitions(config["environment_variables"]["CORS_ALLOW_ORIGIN"])


# The health check, the web client's static files, the API's description and its viewer.
PUBLIC_ROUTES = {"/health", "/", "/web/{name}", "/openapi.yaml", "/docs"}


def test_routes_use_the_cognito_authorizer_except_health_the_web_client_and_the_docs(package):
    template = json.loads((package / "sam.json").read_text())
    paths = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    for path, methods in paths.items():
        for method, spec in methods.items():
            if method == "options":
                continue
            secured = bool(spec.get("security"))
            assert secured == (path not in PUBLIC_ROUTES), (method, path)


def test_zip_holds_everything_the_handlers_import(local_package, tmp_path):
    archive = local_package / "deployment.zip"
    with zipfile.ZipFile(archive) as opened:
        names = set(opened.namelist())
    assert {"chalicelib/edge/web/index.html", "chalicelib/edge/web/app.js", "chalicelib/edge/web/style.css"} <= names
    assert {"chalicelib/edge/openapi.yaml", "chalicelib/edge/web/docs.html", "chalicelib/edge/web/docs.js"} <= names
    if shutil.which("npm"):  # ./dev setup fetched Swagger UI, and chalice packages it
        assert {f"chalicelib/edge/web/{name}" for name in SWAGGER_FILES} <= names
    task, env = lambda_like(tmp_path, archive)  # the zip and the runtime's own libraries, nothing else
    code = (
        "import app, chalicelib.services as s, chalicelib.stores.photo_store, chalicelib.indexing, jwt, pymongo, "
        "numpy, aws_lambda_powertools, PIL.Image, pillow_heif, requests; "
        "from chalicelib.shared.images import HEIF_SUPPORTED; "
        "assert HEIF_SUPPORTED and app.authorizer is not None; print(sorted(app.app.routes))"
    )
    result = run_python(task, env, code)
    assert "/photos/uploads" in result.stdout


def test_packaged_template_passes_cfn_lint(package):
    from tests.test_infrastructure import cfn_lint

    result = cfn_lint(package / "sam.json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_function_runs_under_its_own_role_with_its_own_policy(package):
    """Chalice turns each function's iam_policy_file into its own role (infrastructure/policies.py)."""
    template = json.loads((package / "sam.json").read_text())
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["prod"]["lambda_functions"]
    catalog = json.loads((ROOT / "functions" / "catalog.json").read_text())["functions"]
    roles = set()
    for name, entry in catalog.items():
        function = "api_handler" if entry["handler"] == "app.app" else entry["handler"].removeprefix("app.")
        role = template["Resources"][name]["Properties"]["Role"]["Fn::GetAtt"][0]
        roles.add(role)
        (document,) = [p["PolicyDocument"] for p in template["Resources"][role]["Properties"]["Policies"]]
        assert document == json.loads((ROOT / ".chalice" / config[function]["iam_policy_file"]).read_text()), name
    assert len(roles) == len(catalog)
