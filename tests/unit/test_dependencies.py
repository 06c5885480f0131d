"""Every third-party import under tune3d/ is declared in pyproject.toml.

A fresh `pip install .` brings only the declared core dependencies, so an import of anything else
(even inside a function) must either be declared or sit in a `try` whose `except ImportError` names
the extra to install. The walker is tested on a throw-away package to show it catches both cases.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]

# Packages that are not on PyPI and so cannot be declared; each is imported behind an ImportError
# guard whose message gives the install command.
NOT_ON_PYPI = {"moge": "MoGe teacher: pip install git+https://github.com/microsoft/MoGe.git"}


def _norm(requirement: str) -> str:
    name = re.split(r"[ <>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(pyproject: Path) -> tuple[set[str], dict[str, str]]:
    project = tomllib.loads(pyproject.read_text())["project"]
    core = {_norm(d) for d in project.get("dependencies", [])}
    optional = project.get("optional-dependencies", {})
    extras = {_norm(d): extra for extra, deps in optional.items() for d in deps}
    return core, extras


def _guarded_nodes(tree: ast.AST) -> set[int]:
    """ids of import nodes inside a try whose handler catches ImportError / ModuleNotFoundError."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            h.type is not None and re.search(r"\b(ImportError|ModuleNotFoundError)\b", ast.unparse(h.type))
            for h in node.handlers
        ):
            for stmt in node.body:
                for sub in ast.walk(stmt):
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        guarded.add(id(sub))
    return guarded


def third_party_imports(package: Path) -> list[tuple[Path, int, str, bool]]:
    """(file, line, top-level module, guarded) for every absolute non-stdlib import under `package`."""
    own = package.name
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        guarded = _guarded_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in (own, "__future__"):
                    continue
                found.append((path, node.lineno, top, id(node) in guarded))
    return found


def undeclared(package: Path, pyproject: Path) -> list[str]:
    """Problems, one line each: imports a fresh install of the declared dependencies would lack."""
    core, extras = _declared(pyproject)
    dists = packages_distributions()
    imports = third_party_imports(package)
    problems = []
    for top in NOT_ON_PYPI:
        sites = [(p, g) for p, _, t, g in imports if t == top]
        if sites and not any(g for _, g in sites):
            problems.append(f"{top!r} is not on PyPI, yet no import of it is guarded against ImportError")
    for path, line, top, guarded in imports:
        if top in NOT_ON_PYPI:
            continue
        names = {_norm(d) for d in dists.get(top, [])} or {_norm(top)}
        where = f"{path.relative_to(package.parent)}:{line}"
        if names & core:
            continue
        extra = next((extras[n] for n in names if n in extras), None)
        if extra is None:
            problems.append(f"{where}: imports {top!r} ({', '.join(sorted(names))}), which is not declared")
        elif not guarded:
            problems.append(
                f"{where}: imports {top!r} from extra [{extra}] without an ImportError guard naming the extra"
            )
    return problems


def test_every_import_under_tune3d_is_declared() -> None:
    problems = undeclared(ROOT / "tune3d", ROOT / "pyproject.toml")
    assert not problems, "\n".join(problems)


def test_walker_sees_imports_inside_functions() -> None:
    tops = {top for _, _, top, _ in third_party_imports(ROOT / "tune3d")}
    # gsplat is only ever imported inside functions; the walker must still see it.
    assert {"torch", "timm", "gsplat", "huggingface_hub"} <= tops


def _tmp_project(tmp_path: Path, source: str, extras: str = "") -> tuple[Path, Path]:
    pkg = tmp_path / "tune3d"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(source)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        f'[project]\nname = "x"\nversion = "0"\ndependencies = ["torch>=2", "PyYAML"]\n'
        f"[project.optional-dependencies]\n{extras}\n"
    )
    return pkg, pyproject


def test_undeclared_import_inside_a_function_fails(tmp_path: Path) -> None:
    source = "import torch\nimport yaml\n\ndef f():\n    import scipy.spatial\n"
    pkg, pyproject = _tmp_project(tmp_path, source)
    problems = undeclared(pkg, pyproject)
    assert len(problems) == 1 and "tune3d/mod.py:5" in problems[0] and "'scipy'" in problems[0]


def test_extra_import_needs_a_guard(tmp_path: Path) -> None:
    bare = "def f():\n    import scipy\n"
    pkg, pyproject = _tmp_project(tmp_path, bare, extras='sci = ["scipy"]')
    assert "without an ImportError guard" in undeclared(pkg, pyproject)[0]

    (pkg / "mod.py").write_text(
        "def f():\n    try:\n        import scipy\n    except ImportError as e:\n"
        "        raise SystemExit('pip install tune3d[sci]') from e\n"
    )
    assert undeclared(pkg, pyproject) == []
