"""pytest plugin loaded only by the mutation runs (``make mutate``: pyproject.toml
``[tool.mutmut] pytest_add_cli_args`` has ``-p tests.mutation_plugin``), never by ``make test``.

mutmut replaces every mutated function by a trampoline (a ``functools.wraps`` wrapper defined
in mutmut's own module) that dispatches to the original or to the mutant under test.
TorchScript reads a method's source through ``__wrapped__`` but resolves its names in the
wrapper's globals, so ``torch.jit.script`` of a module whose ``forward`` was mutated fails
("undefined value nn") and the clean run aborts. Here ``torch.jit.script`` compiles such a
module with its original methods put back for the duration of the call: the scripted copy
runs the unmutated code, and its mutants are judged by the eager calls of the same tests.

It also refuses to start when the project's packages would not be imported from mutmut's
working copy (an editable install or a PYTHONPATH shadowing it would test unmutated code).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

PACKAGES = ("preprocess", "model", "shards", "train")


def _is_trampoline(attribute: object) -> bool:
    code = getattr(attribute, "__code__", None)
    return (
        hasattr(attribute, "__wrapped__")
        and code is not None
        and code.co_filename.replace("\\", "/").endswith("mutmut/mutation/trampoline.py")
    )


@contextmanager
def _originals(classes: set[type]) -> Iterator[None]:
    """The mutmut trampolines of ``classes`` and their bases swapped for the wrapped originals."""
    swapped: list[tuple[type, str, Any]] = []
    for klass in {base for cls in classes for base in cls.__mro__}:
        for name, attribute in list(vars(klass).items()):
            if _is_trampoline(attribute):
                swapped.append((klass, name, attribute))
                setattr(klass, name, attribute.__wrapped__)
    try:
        yield
    finally:
        for klass, name, attribute in swapped:
            setattr(klass, name, attribute)


def _scripting_originals(script: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(script)
    def wrapper(obj: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        if isinstance(obj, torch.nn.Module):
            with _originals({type(module) for module in obj.modules()}):
                return script(obj, *args, **kwargs)
        return script(obj, *args, **kwargs)

    return wrapper


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    here = Path.cwd().resolve()  # mutmut runs pytest inside its mutants/ folder
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        origin = Path(spec.origin).resolve() if spec and spec.origin else None
        if origin is None or not origin.is_relative_to(here):
            raise pytest.UsageError(
                f"{package} would be imported from {origin}, not from mutmut's copy in {here}: "
                "run mutmut (make mutate) from the repository root without PYTHONPATH"
            )
    import torch

    if not getattr(torch.jit.script, "_mutation_plugin", False):
        torch.jit.script = _scripting_originals(torch.jit.script)
        torch.jit.script._mutation_plugin = True  # type: ignore[attr-defined]
