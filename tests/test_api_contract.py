"""The API description (chalicelib/edge/openapi.yaml): valid OpenAPI 3.1, complete, served, and enforced.

Every response the in-process API tests produce is validated against it (tests/contract.py, wired
into the ``api`` fixture); these tests check the description itself and that the check can fail.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import validate

import app as app_module
from chalicelib import errors
from chalicelib.edge.api_docs import SPEC_PATH, SWAGGER_FILES, WEB_DIR
from tests.contract import ContractError, check

ROOT = Path(__file__).resolve().parent.parent
SPEC = yaml.safe_load(SPEC_PATH.read_text())


def test_the_description_is_valid_openapi_3_1():
    validate(SPEC)
    assert SPEC["openapi"].startswith("3.1")


def test_every_route_is_described_and_nothing_else():
    routes = {(method.lower(), path) for path, entries in app_module.app.routes.items() for method in entries}
    described = {
        (method, path)
        for path, item in SPEC["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert routes == described


def _raised_codes() -> set[str]:
    """Every error code the code raises (``SomeError(message, code="x")`` or the class default)."""
    classes = {cls.__name__: cls.code for cls in (errors.DomainError, *errors.DomainError.__subclasses__())}
    codes = set(classes.values())
    for path in [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                given = [k.value for k in node.keywords if k.arg == "code"]  # an error of a kind chosen at run time too
                if node.func.id in classes:
                    given += node.args[1:2]
                codes |= {g.value for g in given if isinstance(g, ast.Constant)}
    return codes


def test_every_error_code_is_documented():
    documented = set(SPEC["components"]["schemas"]["Error"]["properties"]["error"]["enum"])
    raised = _raised_codes()
    assert {"no_face", "stale_model_version", "token_expired", "invalid_json", "invalid_cursor"} <= raised
    assert raised <= documented, f"undocumented: {sorted(raised - documented)}"
    assert documented - raised <= {"forbidden"}, f"documented but never raised: {sorted(documented - raised)}"


def test_the_check_refuses_what_the_description_does_not_allow():
    photo, json_type = "0" * 32, {"Content-Type": "application/json"}
    good = {"months": [{"month": "2024-05", "count": 3}]}
    check("GET", "/photos/months", {}, b"", 200, json_type, good)
    with pytest.raises(ContractError, match="breaks the contract"):  # an undocumented field
        check("GET", "/photos/months", {}, b"", 200, json_type, dict(good, extra=1))
    with pytest.raises(ContractError):  # an undocumented error code
        check("GET", f"/photos/{photo}", {}, b"", 404, json_type, {"error": "gone", "message": ""})
    with pytest.raises(ContractError):  # a status the operation does not document
        check("DELETE", f"/trash/{photo}", {}, b"", 418, json_type, {"error": "not_found", "message": ""})
    with pytest.raises(ContractError, match="not an error body"):  # no such route, and not our error shape
        check("GET", "/nowhere", {}, b"", 404, json_type, {"Message": "Not found"})


def test_the_description_is_served(api):
    response = api.http.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(response.body) == SPEC


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is needed to fetch Swagger UI (./dev setup)")
def test_docs_render_from_files_the_api_serves(api):
    assert all((WEB_DIR / name).is_file() for name in SWAGGER_FILES), "run ./dev setup (it fetches Swagger UI)"
    page = api.http.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    for name in (*SWAGGER_FILES, "docs.js"):
        assert f"web/{name}" in page.body.decode()
        asset = api.http.get(f"/web/{name}")
        assert asset.status_code == 200, name
    assert "openapi.yaml" in api.http.get("/web/docs.js").body.decode()


def test_docs_without_the_viewer_say_how_to_get_it(api, monkeypatch, tmp_path):
    monkeypatch.setattr("chalicelib.edge.api_docs.WEB_DIR", tmp_path)
    page = api.http.get("/docs")
    assert page.status_code == 503
    assert "./dev setup" in json.loads(page.body)["message"]


def test_the_pages_have_an_icon_the_api_serves(api):
    """A page without one makes the browser ask for /favicon.ico, which the API does not serve."""
    for page in ("/", "/docs"):
        assert 'rel="icon" href="web/icon.svg"' in api.http.get(page).body.decode()
    icon = api.http.get("/web/icon.svg")
    assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/svg+xml"
    assert icon.body.decode().startswith("<svg")


def test_the_app_is_served_as_an_installable_one(api):
    """The manifest and its icon, the languages, and the service worker allowed to control the page
    one folder up (browser checks: test_web_e2e.py)."""
    page = api.http.get("/").body.decode()
    assert 'rel="manifest" href="web/manifest.webmanifest"' in page and 'name="theme-color"' in page
    manifest = api.http.get("/web/manifest.webmanifest")
    assert manifest.status_code == 200 and manifest.headers["Content-Type"] == "application/manifest+json"
    document = json.loads(manifest.body)
    assert document["display"] == "standalone" and document["start_url"] == "../"
    assert all(api.http.get(f"/web/{icon['src']}").status_code == 200 for icon in document["icons"])
    worker = api.http.get("/web/sw.js")
    assert worker.status_code == 200 and worker.headers["Service-Worker-Allowed"] == "/"
    assert "Service-Worker-Allowed" not in api.http.get("/web/app.js").headers
    catalog = api.http.get("/web/i18n-ko.json")
    assert catalog.headers["Content-Type"].startswith("application/json") and json.loads(catalog.body)["app"]["title"]
