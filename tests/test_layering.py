"""The import contract of docs/design.md §2, checked on the source (``make test`` and CI run it).

Every ``.py`` file of the four packages is parsed (imports at any depth count: inside
functions, under ``TYPE_CHECKING``), each import is resolved to the most specific project
module it names (``from a.b import c`` is ``a.b.c`` when that is a module, else ``a.b``), and:

- the shard format (every ``shards`` module but the CLI and the data viewers) imports nothing
  of ours outside ``shards``; the CLI and the viewers may add the pure geometry layer;
- the geometry layer (``preprocess.geometry``) imports nothing of ours but itself and the
  shard format, and no library but NumPy, OpenCV and SciPy;
- ``model`` imports nothing of ``train``, Ray, DeepSpeed or the shard reader/writer, and only
  ``model.animate`` (inference from a driving video) runs the extractor backends;
- no import cycle between modules; no private name imported from another module;
- benchmarks import the packages, never ``tests``, and do not edit ``sys.path``.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("preprocess", "shards", "model", "train")
GEOMETRY_LIBRARIES = {"numpy", "cv2", "scipy", "__future__"}
"""The only libraries the pure geometry layer may import besides the standard library."""
SHARDS_FRONTENDS = (
    "shards.cli",
    "shards.__main__",
    "shards.show",
    "shards.colors",
    "shards.browse",
)
"""The parts of ``shards`` that are not the format: its CLI and the data viewers."""
EXTRACTORS = ("preprocess.pose", "preprocess.flow", "preprocess.depth")
"""The extractor backends (models run on frames)."""
EXTRACTOR_USERS = {"model.animate"}
"""The one ``model`` module that runs extractors: inference on a driving video."""


@dataclass(frozen=True)
class Import:
    module: str
    """The importing module."""
    target: str
    """The imported module (a project module when it is ours, else the name as written)."""
    names: tuple[str, ...]
    """Names taken with ``from target import ...`` (empty for ``import target``)."""
    line: int


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _files(*roots: str) -> dict[str, Path]:
    return {
        _module_name(p): p
        for root in roots
        for p in sorted((REPO / root).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


MODULES = _files(*PACKAGES)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from ... import`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    is_package = MODULES.get(module, Path()).name == "__init__.py"
    base = package if is_package else package[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path) -> list[Import]:
    """Every import of a file, resolved to project modules where they are ours."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            plain = [a.name for a in node.names if f"{base}.{a.name}" not in MODULES]
            for a in node.names:  # `from pkg import submodule` imports the submodule
                if f"{base}.{a.name}" in MODULES:
                    found.append(Import(module, f"{base}.{a.name}", (), node.lineno))
            if plain or not node.names:
                found.append(Import(module, base, tuple(plain), node.lineno))
    return sorted(found, key=lambda imp: imp.line)


ALL_IMPORTS = [imp for name, path in MODULES.items() for imp in imports_of(name, path)]


def _ours(target: str) -> bool:
    return target.split(".")[0] in PACKAGES


def _under(target: str, *prefixes: str) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def _where(imp: Import) -> str:
    path = MODULES.get(imp.module)
    where = path.relative_to(REPO) if path else imp.module
    return f"{where}:{imp.line} imports {imp.target}"


def _violations(rule: str, imports: list[Import] = ALL_IMPORTS) -> list[str]:
    out = []
    for imp in imports:
        m, t = imp.module, imp.target
        if rule == "format" and _under(m, "shards") and not _under(m, *SHARDS_FRONTENDS):
            bad = _ours(t) and not _under(t, "shards")
        elif rule == "frontends" and _under(m, *SHARDS_FRONTENDS):
            bad = _ours(t) and not _under(t, "shards", "preprocess.geometry")
        elif rule == "geometry" and _under(m, "preprocess.geometry"):
            top = t.split(".")[0]
            foreign = not _ours(t) and top not in sys.stdlib_module_names | GEOMETRY_LIBRARIES
            bad = foreign or (_ours(t) and not _under(t, "preprocess.geometry") and not _format(t))
        elif rule == "model" and _under(m, "model"):
            bad = _under(t, "train", "ray", "deepspeed") or _under(
                t, "shards.reader", "shards.writer", "shards.staging", "shards.publish"
            )
        elif rule == "extractors" and _under(m, "model") and m not in EXTRACTOR_USERS:
            bad = _under(t, *EXTRACTORS)
        else:
            continue
        if bad:
            out.append(_where(imp))
    return out


def _format(target: str) -> bool:
    return _under(target, "shards") and not _under(target, *SHARDS_FRONTENDS)


@pytest.mark.parametrize("rule", ["format", "frontends", "geometry", "model", "extractors"])
def test_layers_import_only_what_they_may(rule: str) -> None:
    assert _violations(rule) == []


def module_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (lazy imports included)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in ALL_IMPORTS:
        if imp.target in MODULES and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one module (Tarjan, iterative so deep graphs are fine)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    component.append(x)
                    if x == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_modules() -> None:
    assert strongly_connected(module_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def private_imports(imports: list[Import]) -> list[str]:
    return [
        f"{_where(imp)} ({', '.join(n for n in imp.names if _private(n))})"
        for imp in imports
        if _ours(imp.target) and imp.target != imp.module and any(map(_private, imp.names))
    ]


def test_no_private_name_is_imported_from_another_module() -> None:
    assert private_imports(ALL_IMPORTS) == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_benchmarks_stand_alone() -> None:
    problems = []
    for name, path in _files("benchmarks").items():
        tree = ast.parse(path.read_text(), str(path))
        for imp in (n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)):
            names = [imp.module or ""] if isinstance(imp, ast.ImportFrom) else []
            names += [a.name for a in imp.names] if isinstance(imp, ast.Import) else []
            problems += [f"{name}:{imp.lineno} imports {n}" for n in names if _under(n, "tests")]
        problems += [
            f"{name}:{node.lineno} edits sys.path"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr == "path"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        ]
    assert problems == []


def test_train_shadows_no_standard_or_project_module() -> None:
    """``deepspeed train/main.py`` puts ``train/`` first on sys.path (docs/design.md §2)."""
    shadowing = [
        p.name
        for p in (REPO / "train").glob("*.py")
        if p.stem in sys.stdlib_module_names or p.stem in PACKAGES
    ]
    assert shadowing == []


def test_the_contract_sees_a_planted_violation(tmp_path: Path) -> None:
    """The checks above read real files: a violation written into a module is reported."""
    source = (
        "from train.config import TrainConfig\n"
        "def f():\n    from shards.schema import _private\n"
        "from . import guiders\n"
        "from preprocess.pose import create_pose_backend\n"
    )
    imports = imports_of("model.planted", _write(tmp_path / "planted.py", source))
    targets = [i.target for i in imports]
    assert targets == ["train.config", "shards.schema", "model.guiders", "preprocess.pose"]
    assert _violations("model", imports) == ["model.planted:1 imports train.config"]
    assert _violations("extractors", imports) == ["model.planted:5 imports preprocess.pose"]
    assert private_imports(imports) == ["model.planted:3 imports shards.schema (_private)"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
