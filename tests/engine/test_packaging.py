"""Packaging that is true: pyproject.toml and the requirements files declare the same packages with the
same bounds, and every third-party package the product imports is declared.

The README installs with ``pip install -r requirements.txt``, ``pip install .`` reads pyproject.toml: the
two must not drift apart. Imports are read from the source (every ``import`` statement, at any depth) of
gemini_core/, ui/, pages/ and app.py, and each top-level name is mapped to the distribution that provides it
here (``importlib.metadata.packages_distributions``). A package only in an optional extra (ray, llama.cpp)
may be imported only where its absence is handled: inside a function or a ``try`` that catches ImportError,
never at the top of a module.
"""
from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"gemini_core", "ui", "pages", "app", "bench", "tests"}
PRODUCT = [ROOT / "app.py", *sorted((ROOT / "gemini_core").rglob("*.py")), *sorted((ROOT / "ui").rglob("*.py")),
           *sorted((ROOT / "pages").rglob("*.py"))]
# Optional packages not installed in the test environment, so packages_distributions() cannot map them.
NOT_INSTALLED = {"llama_cpp": "llama-cpp-python",  # the llama.cpp extra compiles llama.cpp: not in the tests
                 # the recommend extra installs with --no-deps from requirements-recommend.txt: maybe not here
                 "torchrec": "torchrec", "fbgemm_gpu": "fbgemm-gpu-cpu", "implicit": "implicit"}


def _requirements_file(path: Path) -> dict[str, Requirement]:
    """{canonical name: requirement} of a requirements file; ``-r`` lines and comments are skipped."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        assert canonicalize_name(req.name) not in out, f"{path.name}: {req.name} is listed twice"
        out[canonicalize_name(req.name)] = req
    return out


def _listed(requirements) -> dict[str, Requirement]:
    out = {}
    for text in requirements:
        req = Requirement(text)
        assert canonicalize_name(req.name) not in out, f"pyproject.toml: {req.name} is listed twice"
        out[canonicalize_name(req.name)] = req
    return out


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _key(req: Requirement) -> tuple:
    return sorted(str(s) for s in req.specifier), sorted(req.extras), str(req.marker or "")


def _differences(a: dict[str, Requirement], b: dict[str, Requirement], a_name: str, b_name: str) -> list[str]:
    problems = [f"{n}: in {a_name} only" for n in sorted(a.keys() - b.keys())]
    problems += [f"{n}: in {b_name} only" for n in sorted(b.keys() - a.keys())]
    problems += [f"{n}: {a[n]} in {a_name}, {b[n]} in {b_name}" for n in sorted(a.keys() & b.keys())
                 if _key(a[n]) != _key(b[n])]
    return problems


def test_pyproject_dependencies_are_requirements_txt():
    assert _differences(_requirements_file(ROOT / "requirements.txt"), _listed(_project()["dependencies"]),
                        "requirements.txt", "pyproject [project] dependencies") == []


def test_pyproject_dev_extra_is_requirements_dev_txt():
    dev = _requirements_file(ROOT / "requirements-dev.txt")
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    assert _differences(dev, _listed(_project()["optional-dependencies"]["dev"]),
                        "requirements-dev.txt", "pyproject [dev] extra") == []


def test_the_difference_finder_sees_a_bound_and_a_missing_package():
    """The comparison itself, on a planted drift: a changed floor and a package left out."""
    a = _listed(["torch>=2.10,<2.14", "onnxruntime-genai>=0.18,<0.19"])
    b = _listed(["torch>=2.4,<2.14"])
    assert _differences(a, b, "a", "b") == ["onnxruntime-genai: in a only",
                                            "torch: torch<2.14,>=2.10 in a, torch<2.14,>=2.4 in b"]
    assert _differences(_listed(["Torch <2.14, >=2.10"]), _listed(["torch>=2.10,<2.14"]), "x", "y") == []


def _pinned(declared: dict[str, Requirement]) -> dict[str, str]:
    """{name: installed version} of the declared packages held to one minor series (``>=0.20.1,<0.21``) whose
    installed version is in that range: their metadata is what any allowed version asks for."""
    from packaging.version import Version

    out = {}
    for name, req in declared.items():
        floors = [Version(s.version) for s in req.specifier if s.operator == ">="]
        if not floors or not any(s.operator == "<" for s in req.specifier):
            continue
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            continue
        if req.specifier.contains(installed, prereleases=True) and installed.release[:2] == max(floors).release[:2]:
            out[name] = str(installed)
    return out


def test_floors_meet_what_pinned_dependencies_need():
    """Each declared floor is at least what the pinned dependencies require of that package (their own
    metadata): compressed-tensors 0.20 needs torch>=2.10, onnxruntime-genai 0.18 onnxruntime>=1.31,
    nncf 3.4 safetensors>=0.4.1."""
    from packaging.version import Version

    declared = _requirements_file(ROOT / "requirements.txt") | _listed(_project()["dependencies"])
    pinned = _pinned(declared)
    assert {"compressed-tensors", "onnxruntime-genai", "nncf"} <= pinned.keys(), pinned
    too_low = []
    for name, version in sorted(pinned.items()):
        for text in importlib.metadata.requires(name) or []:
            need = Requirement(text)
            target = canonicalize_name(need.name)
            if target not in declared or (need.marker is not None and not need.marker.evaluate({"extra": ""})):
                continue
            wanted = max((Version(s.version) for s in need.specifier if s.operator in (">=", ">", "==", "~=")),
                         default=None)
            floor = max((Version(s.version) for s in declared[target].specifier if s.operator == ">="),
                        default=Version("0"))
            if wanted is not None and wanted > floor:
                too_low.append(f"{target}>={floor}, but {name} {version} requires {need}")
    assert too_low == []


# -- every third-party import is declared -------------------------------------------------------------------
def _imports(path: Path):
    """(top-level name, guarded) for every absolute import in ``path``; guarded: inside a function, or in the
    body of a ``try`` with an ``except ImportError`` (or ModuleNotFoundError)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def catches_import_error(node: ast.Try) -> bool:
        names = set()
        for handler in node.handlers:
            if handler.type is None:
                return True
            for t in handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]:
                names.add(t.id if isinstance(t, ast.Name) else getattr(t, "attr", ""))
        return bool(names & {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})

    def visit(node, guarded: bool):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], guarded
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], guarded
        for field, value in ast.iter_fields(node):
            children = value if isinstance(value, list) else [value]
            inner = guarded or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or (
                isinstance(node, ast.Try) and field == "body" and catches_import_error(node))
            for child in children:
                if isinstance(child, ast.AST):
                    yield from visit(child, inner)

    yield from visit(tree, False)


def _third_party() -> dict[str, dict[str, bool]]:
    """{import name: {file: unguarded anywhere in it}} for names that are not stdlib or this project."""
    out: dict[str, dict[str, bool]] = {}
    for path in PRODUCT:
        for name, guarded in _imports(path):
            if name in sys.stdlib_module_names or name in FIRST_PARTY or name == "__future__":
                continue
            files = out.setdefault(name, {})
            rel = str(path.relative_to(ROOT))
            files[rel] = files.get(rel, False) or not guarded
    return out


def test_every_third_party_import_is_declared():
    project = _project()
    required = set(_listed(project["dependencies"]))
    optional = {name for extra, reqs in project["optional-dependencies"].items() if extra != "dev"
                for name in _listed(reqs)}
    mapping = importlib.metadata.packages_distributions()
    problems = []
    for name, files in sorted(_third_party().items()):
        dists = {canonicalize_name(d) for d in mapping.get(name, [])}
        if name in NOT_INSTALLED:
            dists.add(canonicalize_name(NOT_INSTALLED[name]))
        where = ", ".join(sorted(files))
        if not dists:
            problems.append(f"{name} ({where}): no installed distribution provides it; declare it (and add it to "
                            "NOT_INSTALLED here if it is an optional extra that the tests do not install)")
        elif dists & required:
            continue
        elif dists & optional:
            unguarded = sorted(f for f, bare in files.items() if bare)
            if unguarded:
                problems.append(f"{name} is an optional extra but is imported at module level, unguarded, in "
                                f"{', '.join(unguarded)}: import it where it is used, or catch ImportError")
        else:
            problems.append(f"{name} ({where}) comes from {', '.join(sorted(dists))}, which pyproject.toml does not "
                            "declare")
    assert problems == []


def test_the_import_reader_sees_guards(tmp_path):
    """The reader on a planted module: guarded and unguarded imports of one optional package."""
    import textwrap

    source = textwrap.dedent("""
        import numpy
        from ray import remote
        try:
            import llama_cpp
        except ImportError:
            llama_cpp = None
        def f():
            import ray
        from . import sibling
    """)
    path = tmp_path / "planted.py"
    path.write_text(source, encoding="utf-8")
    assert list(_imports(path)) == [("numpy", False), ("ray", False), ("llama_cpp", True), ("ray", True)]


@pytest.mark.parametrize("name", ["yaml", "compressed_tensors", "onnxruntime_genai"])
def test_imports_that_were_undeclared_are_declared(name):
    """Each of these was imported without being in pyproject's dependencies."""
    declared = set(_listed(_project()["dependencies"]))
    assert {canonicalize_name(d) for d in importlib.metadata.packages_distributions()[name]} & declared
