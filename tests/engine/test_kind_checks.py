"""Nothing outside a kind's own folder asks which kind it holds: it asks the kind (``gemini_core.kinds``) or its
quality metric (``gemini_core.results.metrics``).

The scanner reads the code (comments left out) of gemini_core/, ui/, pages/ and app.py for the shapes a kind
check takes (``is_llm...``, ``"perplexity" in ...``, ``scenario == "llm"``, ``kind == "llm"``,
``.get("kind") == "llm"``, ``.get("quality") == "perplexity"``) and names each offender as file:line. A
kind's own folder (``gemini_core/kinds/<kind>/``) and its page module (``ui/kinds/<kind>.py``) may speak of
their kind.
"""
from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("gemini_core", "ui", "pages", "app.py")


def _patterns() -> list[re.Pattern]:
    """The shapes of a kind check, for every registered kind and quality metric (a kind added later is
    covered without touching this test). ``kind`` alone also names progress events, sensitivity phases and
    preprocessing types, so a comparison counts when its other side names a kind or a metric."""
    from gemini_core.kinds.registry import KINDS
    from gemini_core.results.metrics import METRICS

    kinds = "|".join(sorted(map(re.escape, KINDS)))
    names = "|".join(sorted(map(re.escape, [*KINDS, *METRICS])))
    metrics = "|".join(sorted(map(re.escape, METRICS)))
    return [
        re.compile(rf"\bis_({kinds})(_\w*)?\b"),  # is_llm, is_llm_frame, is_llm_point
        re.compile(rf"""["']({metrics})["']\s+(not\s+)?in\b"""),  # "perplexity" in df.columns
        re.compile(rf"""[=!]=\s*["']({names})["']"""),  # scenario == "llm", kind == "llm", .get("quality") == ...
        re.compile(rf"""["']({names})["']\s*[=!]="""),
    ]


PATTERNS = _patterns()

def _exempt(rel: str) -> bool:
    """A kind's own folder or page module."""
    parts = rel.split("/")
    if parts[:2] == ["gemini_core", "kinds"] and len(parts) > 3:
        return True  # gemini_core/kinds/<kind>/...
    return parts[:2] == ["ui", "kinds"] and len(parts) == 3


def _code_lines(text: str) -> dict[int, str]:
    """Each line's code without its comment (tokenize knows a '#' inside a string from a comment)."""
    lines = text.splitlines()
    comments: dict[int, int] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.start[1]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a file that does not tokenize is still scanned, comments and all
    return {i: (line[:comments[i]] if i in comments else line) for i, line in enumerate(lines, start=1)}


def python_files(root: Path, paths=SCANNED):
    for name in paths:
        path = root / name
        if path.is_file() and path.suffix == ".py":
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def kind_checks(root: Path = ROOT, paths=SCANNED, only=None, skip=()) -> list[str]:
    """'file:line: code' for every kind check in ``paths`` under ``root`` (kind folders exempt); ``only``:
    keep files under these prefixes; ``skip``: leave these files out."""
    found = []
    for path in python_files(root, paths):
        rel = path.relative_to(root).as_posix()
        if _exempt(rel) or rel in skip or (only is not None and not any(
                rel == p or rel.startswith(p.rstrip("/") + "/") for p in only)):
            continue
        for number, code in _code_lines(path.read_text(encoding="utf-8")).items():
            if any(p.search(code) for p in PATTERNS):
                found.append(f"{rel}:{number}: {code.strip()}")
    return found


def test_the_scanner_finds_a_planted_kind_check(tmp_path):
    (tmp_path / "gemini_core" / "results").mkdir(parents=True)
    (tmp_path / "gemini_core" / "kinds" / "llm").mkdir(parents=True)
    (tmp_path / "ui" / "kinds").mkdir(parents=True)
    (tmp_path / "gemini_core" / "results" / "x.py").write_text(
        "a = 1\n"
        "# is_llm_frame was here (a comment is not code)\n"
        "text = 'a # is_llm in a string after code'  # and a comment\n"
        "if rec.get('kind') == 'llm':\n"
        "    pass\n"
        "llm = 'perplexity' in df.columns\n"
        "same = info.name == \"classifier\"\n"
        "fine = event.kind == 'step' or scenario.data_kind == 'text'\n"
        "noisy = 'accuracy' in objectives\n")
    (tmp_path / "gemini_core" / "kinds" / "llm" / "y.py").write_text("if rec.get('kind') == 'llm':\n    pass\n")
    (tmp_path / "ui" / "kinds" / "llm.py").write_text("ok = row['kind'] == 'llm'\n")
    (tmp_path / "app.py").write_text("def is_llm_point(r):\n    return True\n")
    found = sorted(kind_checks(tmp_path))
    assert found == ["app.py:1: def is_llm_point(r):",
                     "gemini_core/results/x.py:3: text = 'a # is_llm in a string after code'",
                     "gemini_core/results/x.py:4: if rec.get('kind') == 'llm':",
                     "gemini_core/results/x.py:6: llm = 'perplexity' in df.columns",
                     "gemini_core/results/x.py:7: same = info.name == \"classifier\"",
                     "gemini_core/results/x.py:9: noisy = 'accuracy' in objectives"], found
    assert kind_checks(tmp_path, only=("gemini_core/results",), skip=("gemini_core/results/x.py",)) == []


def test_no_kind_checks_anywhere_outside_the_kinds():
    found = kind_checks()
    assert not found, "kind checks (ask the kind or its metric instead):\n" + "\n".join(found)
