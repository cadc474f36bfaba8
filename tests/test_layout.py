"""The package map in the README is the one the code has: every first-party package is listed,
and each imports only the packages its row allows. Adapters stay sealed: MongoDB is queried in
the stores only, S3 is called through ``ObjectStorage`` only."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MONGO_CALLS = {
    "find_one",
    "insert_one",
    "insert_many",
    "update_one",
    "update_many",
    "replace_one",
    "delete_one",
    "delete_many",
    "count_documents",
    "aggregate",
    "bulk_write",
    "create_index",
    "find_one_and_update",
}
# chalicelib's wings: what each may import of chalicelib (its own modules always). The domain's
# modules stay flat in chalicelib/; records, errors, settings and the clock are the kernel every layer shares.
KERNEL = {"chalicelib", "chalicelib.records", "chalicelib.errors", "chalicelib.settings", "chalicelib.clock"}
WINGS = {
    "chalicelib.shared": {"chalicelib"},  # the face image copies it alone: nothing else of ours
    "chalicelib.stores": KERNEL | {"chalicelib.shared"},  # no domain module, no edge
}


def readme_map() -> dict[str, set[str]]:
    """{package: the packages it may import} from the README's layout table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            package = cells[0].strip("`/").removesuffix(".py").replace("/", ".")
            rows[package] = {name.strip("/").replace("/", ".") for name in re.findall(r"`([^`]+)`", cells[2])}
    return rows


def package_of(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return "app" if parts == ("app.py",) else parts[0]


def imported_packages(path: Path, packages: set[str]) -> set[str]:
    found = set()
    module = path.relative_to(ROOT).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(module[: len(module) - node.level]) + "." if node.level else ""
            names = [base + (node.module or "")] + [base + (node.module or "") + "." + a.name for a in node.names]
        else:
            continue
        for name in names:
            candidates = [p for p in packages if name == p or name.startswith(p + ".")]
            if candidates:
                found.add(max(candidates, key=len))
    return found


def python_files():
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).parts
        if relative[0] not in (".venv", ".cache", ".chalice", "node_modules") and not relative[0].startswith("."):
            yield path


def test_the_readme_map_is_the_code_map():
    allowed = readme_map()
    assert "chalicelib" in allowed and "model_factory" in allowed, allowed
    packages = set(allowed)
    listed_everywhere = {package_of(p) for p in python_files()}
    assert listed_everywhere <= packages | {"tests"}, listed_everywhere - packages
    wrong = {}
    for path in python_files():
        package = package_of(path)
        if package == "tests":
            continue
        extra = imported_packages(path, packages) - allowed[package] - {package}
        if extra:
            wrong[str(path.relative_to(ROOT))] = sorted(extra)
    assert not wrong, f"imports the README's layout map does not allow: {wrong}"


def chalicelib_modules() -> dict[str, Path]:
    """{dotted module name: path} of every module in chalicelib, its wings included."""
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in sorted((ROOT / "chalicelib").rglob("*.py"))
    }


def chalicelib_imports(path: Path) -> set[str]:
    """The chalicelib modules ``path`` imports (``from chalicelib.x import y``: chalicelib.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "chalicelib":
            assert node.level == 0, f"{path}: chalicelib's modules import each other by their full names"
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "chalicelib"}
    return found


SUBPACKAGES = {"chalicelib.edge", "chalicelib.ops", *WINGS}


def wing_of(module: str) -> str:
    """The subpackage holding ``module``, or chalicelib itself for the flat domain."""
    return next((wing for wing in SUBPACKAGES if module == wing or module.startswith(wing + ".")), "chalicelib")


def test_chalicelibs_wings_import_down_only():
    """The shared package and the stores import only what their row allows; the edge imports no store;
    the domain takes the edge's parsed requests and nothing else of it; nothing imports the operator
    commands."""
    wrong = []
    for module, path in chalicelib_modules().items():
        wing = wing_of(module)
        for imported in chalicelib_imports(path):
            target = wing_of(imported)
            if target == wing:
                continue
            allowed = WINGS.get(wing)  # the flat domain's modules by name, a wing as a whole
            if allowed is not None and imported not in allowed and (target == "chalicelib" or target not in allowed):
                wrong.append(f"{module} → {imported}")
            if wing == "chalicelib.edge" and target == "chalicelib.stores":
                wrong.append(f"{module} → {imported} (the edge imports no store)")
            parsed_requests = imported == "chalicelib.edge.request_models" or module == "chalicelib.services"  # wiring
            if wing == "chalicelib" and target == "chalicelib.edge" and not parsed_requests:
                wrong.append(f"{module} → {imported} (the domain takes parsed requests, nothing else of the edge)")
            if target == "chalicelib.ops" and wing != "chalicelib.ops":
                wrong.append(f"{module} → {imported} (operator code is run by hand, never imported)")
    assert not wrong, wrong
    assert {wing_of(m) for m in chalicelib_modules()} == {"chalicelib", *SUBPACKAGES}


def test_mongodb_is_queried_in_the_stores_and_s3_called_in_storage_only():
    leaks = []
    for module, path in [*chalicelib_modules().items(), ("app", ROOT / "app.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            if node.attr in MONGO_CALLS and wing_of(module) != "chalicelib.stores":
                leaks.append(f"{path.name}:{node.lineno} .{node.attr}")
            if node.attr == "s3" and path.name not in ("object_storage.py", "services.py"):  # services: the wiring
                leaks.append(f"{path.name}:{node.lineno} .s3")
    assert not leaks, leaks


def test_the_domain_says_what_went_wrong_and_only_the_edge_says_it_in_http():
    from chalicelib import errors
    from chalicelib.edge import http_errors

    kinds = set(errors.DomainError.__subclasses__())
    assert kinds == set(http_errors.STATUS), "every kind of domain error has exactly one HTTP status, at the edge"
    assert len(set(http_errors.STATUS.values())) == len(kinds)
    for path in chalicelib_modules().values():
        if path.name in ("http_errors.py", "face_client.py", "images.py"):
            continue  # the edge; the face endpoint's HTTP contract (its statuses) and its image errors
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                assert node.attr != "status", f"{path.name}:{node.lineno} sets an HTTP status outside the edge"
            if isinstance(node, ast.Name) and node.id in ("http_errors", "status_of"):
                raise AssertionError(f"{path.name}:{node.lineno}: the domain does not map its errors to HTTP")
