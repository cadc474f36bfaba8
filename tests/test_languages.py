"""The web client's two languages: the catalogs agree, every key the page asks for exists in both,
and the Korean catalog is Korean (the browser test walks the app in Korean: test_web_e2e.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parent.parent / "chalicelib" / "edge" / "web"
PLURALS = ("_one", "_other")


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


CATALOGS = {lang: flat(json.loads((WEB / f"i18n-{lang}.json").read_text())) for lang in ("en", "ko")}


def has(catalog: dict, key: str) -> bool:
    return key in catalog or any(key + suffix in catalog for suffix in PLURALS)


def test_the_catalogs_hold_the_same_messages():
    # Korean has one plural form (Intl.PluralRules("ko") says "other"): English's "_one" has no twin.
    english = {k for k in CATALOGS["en"] if not k.endswith("_one")}
    assert english == set(CATALOGS["ko"])


def test_every_key_the_page_asks_for_exists_in_both():
    script = (WEB / "app.js").read_text()
    asked = set(re.findall(r'\bt\("([a-z_.A-Z]+)"', script))
    for pair in re.findall(r'\? "([a-z_]+\.[a-z_.]+)" : "([a-z_]+\.[a-z_.]+)"', script):  # t(cond ? "a" : "b")
        asked |= set(pair)
    page = (WEB / "index.html").read_text()
    asked |= set(re.findall(r'data-i18n(?:-label|-placeholder|-alt)?="([a-z_.]+)"', page))
    assert len(asked) > 150
    for lang, catalog in CATALOGS.items():
        missing = sorted(k for k in asked if not has(catalog, k))
        assert missing == [], (lang, missing)
    # Keys built at run time: the photo states, the match words, the API's and Cognito's error codes.
    for status in ("pending", "indexed", "failed", "duplicate"):
        assert has(CATALOGS["ko"], f"status.{status}")
    for match in ("confirmed", "same_person", "very_likely", "likely", "possible"):
        assert has(CATALOGS["ko"], f"find.match.{match}")


def test_every_error_code_of_the_api_has_words_in_both():
    sources = "\n".join(p.read_text() for p in WEB.parents[1].rglob("*.py"))
    codes = set(re.findall(r'code="([a-z_]+)"', sources)) | set(re.findall(r'^\s+code = "([a-z_]+)"', sources, re.M))
    codes -= {"invalid_cursor", "invalid_unicode", "invalid_json"}  # a client's bug, not the user's: the general words
    assert len(codes) > 20
    for lang, catalog in CATALOGS.items():
        assert sorted(c for c in codes if f"api.{c}" not in catalog) == [], lang


def test_korean_messages_are_korean():
    assert [k for k, v in CATALOGS["ko"].items() if not re.search(r"[\uac00-\ud7a3]", v)] == []


@pytest.mark.parametrize(
    "variable, package, file",
    [
        ("I18NEXT", "i18next", "i18next.min.js"),
        ("IDB_KEYVAL", "idb-keyval", "idb-keyval.js"),
        ("CLIENT_ZIP", "client-zip", "client-zip.js"),
    ],
)
def test_the_clients_libraries_are_fetched_at_build_time_and_pinned(variable, package, file):
    dev = (WEB.parents[2] / "dev").read_text()
    assert re.search(rf"^{variable}={package}@\d+\.\d+\.\d+$", dev, re.M) and "  web_libraries\n}" in dev
    assert f"chalicelib/edge/web/{file}" in (WEB.parents[2] / ".gitignore").read_text().splitlines()
    (line,) = (WEB / f"{package}.sha256").read_text().splitlines()
    assert line.endswith(f"  chalicelib/edge/web/{file}") and len(line.split()[0]) == 64
