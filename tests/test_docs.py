"""The docs cannot rot silently: every command README.md, CONTRIBUTING.md and docs/ show names a
module, script, subcommand and flags that exist."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
DEV = (ROOT / "dev").read_text()
CLI = (ROOT / "memstudio" / "__main__.py").read_text()
STOP = {"|", ";", "&&", "||", ">", "→", "#"}


def snippets(text: str) -> list[str]:
    """Every line of a fenced block and every inline code span."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            out.append(line)
    out += re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))  # spans may wrap lines
    return out


def words(snippet: str) -> list[str]:
    try:
        return shlex.split(snippet, comments=True)
    except ValueError:  # an unbalanced quote in prose: plain splitting is enough to find commands
        return snippet.split()


def arguments(tokens: list[str]) -> list[str]:
    taken = []
    for token in tokens:
        if token in STOP or token.startswith(("$(", "`")):
            break
        taken.append(token.rstrip(")"))
    return taken


def flags(tokens: list[str]) -> set[str]:
    options = (t.strip("[]") for t in arguments(tokens))
    return {t.split("=")[0] for t in options if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?", t)}


def commands() -> list[tuple[str, str, list[str]]]:
    """(document, kind, tokens from the command on): kind is ``module``, ``script``, ``dev`` or ``cli``."""
    found = []
    for document in DOCUMENTS:
        for snippet in snippets(document.read_text()):
            tokens = words(snippet)
            for i, token in enumerate(tokens):
                rest = tokens[i + 1 :]
                if token.endswith("python") and rest[:1] == ["-m"] and len(rest) > 1:
                    found.append((document.name, "module", rest[1:]))
                elif token.endswith("python") and rest and rest[0].endswith(".py"):
                    found.append((document.name, "script", rest))
                elif token == "./dev" and rest:
                    found.append((document.name, "dev", rest))
                elif token == "memstudio" and rest and re.fullmatch(r"[a-z][a-z-]+", rest[0]):
                    found.append((document.name, "cli", rest))
    return found


COMMANDS = commands()


def module_source(name: str) -> str:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin, f"no module {name}"
    origin = Path(spec.origin)
    if origin.name == "__init__.py" and (origin.parent / "__main__.py").exists():
        origin = origin.parent / "__main__.py"
    return origin.read_text()


def test_the_docs_show_commands_of_every_kind():
    kinds = {kind for _, kind, _ in COMMANDS}
    assert kinds == {"module", "script", "dev", "cli"}
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("document,kind,tokens", COMMANDS, ids=lambda v: v if isinstance(v, str) else None)
def test_each_command_exists_with_the_flags_shown(document, kind, tokens):
    if kind == "module":
        name = tokens[0]
        if name in ("pip", "pytest", "venv"):
            return
        source = module_source(name)
        if len(tokens) > 1 and re.fullmatch(r"[a-z][a-z-]+", tokens[1]):  # a subcommand
            assert f'"{tokens[1]}"' in source, f"{document}: python -m {name} {tokens[1]}"
    elif kind == "script":
        path = ROOT / tokens[0]
        assert path.exists(), tokens[0]
        source = path.read_text()
    elif kind == "dev":
        sub = tokens[0]
        assert re.search(rf"^\s*([a-z|]+\|)?{re.escape(sub)}(\|[a-z|]+)?\)", DEV, re.M), f"./dev {sub}"
        if sub == "cli" and len(tokens) > 1 and re.fullmatch(r"[a-z][a-z-]+", tokens[1]):
            assert f'add_parser("{tokens[1]}"' in CLI, f"memstudio {tokens[1]}"
            source = CLI
        elif sub == "train":
            source = module_source("training")
        elif sub in ("up", "user", "token"):
            source = module_source("local_stack")
        else:
            source = DEV
    else:
        assert f'add_parser("{tokens[0]}"' in CLI, f"memstudio {tokens[0]}"
        source = CLI
    missing = {flag for flag in flags(tokens[1:]) if not re.search(re.escape(flag) + r"(?![a-z0-9-])", source)}
    assert not missing, f"{document}: {' '.join(tokens[:6])}: no {sorted(missing)}"


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    titles = re.findall(r"^#{1,4} (.+)$", re.sub(r"```.*?```", "", path.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") for title in titles}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_heading(document):
    for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        path = (document.parent / file_part).resolve() if file_part else document
        assert path.exists(), f"{document.name}: {target}"
        if anchor:
            assert anchor in anchors(path), f"{document.name}: {target}"
