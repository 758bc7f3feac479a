"""The one shape of every extractor backend (pose, flow, depth): base class and registry.

A backend is built from its config section alone (``Backend(cfg)``; model backends load their
weights there, inside a Ray actor in a cluster run), resolves ``cfg.device`` through
:mod:`preprocess.devices` into ``.device`` (a backend that cannot run on the asked device
fails, naming the config key), and describes itself with :meth:`Backend.identity`
(``{"name", "model", "sha256", ...extras}``, recorded in every clip and compared on resume).
Each kind has one :class:`Registry`; a backend registers with ``@REGISTRY.register("name")``
and the job builds the configured one with ``REGISTRY.create(cfg)``, so adding one never
touches the pipeline. The kinds live in ``preprocess.pose``, ``preprocess.flow`` and
``preprocess.depth``; the stages in ``preprocess.stages`` call them.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar, final

from preprocess.devices import RUNTIMES, resolve_device
from preprocess.weights import backend_identity


class BackendConfig(Protocol):
    """What every backend config section has (``PoseConfig``, ``FlowConfig``, ``DepthConfig``)."""

    backend: str
    device: str


C = TypeVar("C", bound=BackendConfig)


class Backend(ABC, Generic[C]):
    """An extractor backend: ``cfg``, the resolved ``device`` and an ``identity()``.

    Subclasses set ``name`` (their registry name) and, when they can use a GPU, ``runtime``
    (``torch`` or ``onnx``; the default ``cpu`` means plain CPU code: ``auto``/``cpu`` only).
    The kind's base class sets ``kind`` (the config section: ``pose``, ``flow``, ``depth``).
    ONNX backends replace ``device`` by the one their session really runs on."""

    kind: ClassVar[str]
    name: ClassVar[str]
    runtime: ClassVar[str] = "cpu"

    def __init__(self, cfg: C) -> None:
        self.cfg = cfg
        self.device: str = resolve_device(
            cfg.device, self.runtime, f"{self.kind}.device", f"{self.kind}.backend={self.name}"
        )

    def model_file(self) -> str:
        """The weights behind the backend, recorded as ``model`` ('' for none); when it is a
        file, its sha256 is recorded too."""
        return ""

    def identity_extras(self) -> dict[str, object]:
        """What else decides the backend's output (a preset, a detector, a hub id)."""
        return {}

    @final
    def identity(self) -> dict[str, object]:
        """``{"name", "model", "sha256", **identity_extras()}``: recorded in every clip's
        metadata and in ``backends.json``; an output made with another identity is not resumed."""
        return backend_identity(self.name, self.model_file(), **self.identity_extras())


B = TypeVar("B", bound=Backend[Any])


class Registry(Generic[B]):
    """The backends of one kind, by configuration name (``<kind>.backend``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[B]] = {}

    def register(self, name: str) -> Callable[[type[B]], type[B]]:
        """Class decorator: make a backend available as ``<kind>.backend=<name>``."""

        def decorate(cls: type[B]) -> type[B]:
            if name in self._classes:
                raise ValueError(f"{self.kind} backend {name!r} is registered twice")
            if cls.kind != self.kind or getattr(cls, "name", None) != name:
                raise ValueError(
                    f"{cls.__name__} (kind {cls.kind!r}, name {getattr(cls, 'name', None)!r}) "
                    f"cannot register as {self.kind} backend {name!r}"
                )
            if cls.runtime not in RUNTIMES:
                raise ValueError(f"{cls.__name__}.runtime={cls.runtime!r}; one of {RUNTIMES}")
            self._classes[name] = cls
            return cls

        return decorate

    def get(self, name: str) -> type[B]:
        """The class registered as ``name``; unknown names list the available ones."""
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} backend {name!r} ({self.kind}.backend); "
                f"available: {', '.join(self.names())}"
            ) from None

    def create(self, cfg: BackendConfig) -> B:
        """The configured backend, built (weights loaded, device resolved)."""
        return self.get(cfg.backend)(cfg)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)


def require_model_file(path: str, key: str, how_to_get: str) -> Path:
    """The weights file at ``path``, or a FileNotFoundError naming it, its config key and source."""
    if not path:
        raise FileNotFoundError(f"{key} is not set: point it at the model file. {how_to_get}")
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise FileNotFoundError(
            f"model file {str(resolved)!r} (config key {key}) does not exist. {how_to_get}"
        )
    return resolved
