"""Typed job configs and their command lines: defaults < YAML preset < flags < dotted overrides.

Every job (preprocessing, training, evaluation, model folders, animation) declares one nested
dataclass whose fields carry a docstring each (the string right after the field). This
module is the one mechanism that turns a YAML preset, command-line flags and ``key.sub=value``
overrides into an instance of it, writes the resolved config back as YAML, and builds the
``--help`` of every entry point from the field docstrings. It lives in ``shards/`` because
the resolved config is part of the on-disk contract: it is stored next to every output,
inside every clip's metadata and inside every checkpoint, and ``preprocess/``, ``train/``
and ``model/`` all read it back.

An entry point::

    @dataclass
    class Sampling:
        steps: int = 50
        \"\"\"DDIM steps.\"\"\"

    @dataclass
    class JobConfig:
        out: str = ""
        \"\"\"Output video (.mp4).\"\"\"
        sampling: Sampling = field(default_factory=Sampling)

    def main(argv: list[str] | None = None) -> int:
        cli = ConfigCLI(JobConfig)                   # --config PRESET.yaml, KEY=VALUE ...
        parser = cli.parser("python -m job", "Animate one image.")
        cli.flag(parser, "--out", required=True)     # alias of the key "out"
        cli.flag(parser, "--steps", key="sampling.steps")  # help: "DDIM steps. [sampling.steps]"
        parser.add_argument("--log-level", default="INFO", help="logging level")  # not a key
        args = parser.parse_args(argv)
        cfg = cli.config(args)                       # a JobConfig; ConfigError if it cannot be
        ...

``--help`` then lists the flags with their field docstrings and, in its epilog, every dotted
key with its type, default and docstring (:func:`format_keys`). Without argparse,
:func:`load_config` does the same merge (``base=`` starts from an existing config, e.g. a preset
instance, instead of the class defaults).

OmegaConf does the merging and type checking (unknown keys and wrong types are errors that
name the key); YAML is read with a safe loader; flag values are converted by argparse from
the field's type (``list[...]`` fields take a comma list, ``bool`` fields ``--x/--no-x``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import itertools
import shutil
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from shards.storage import read_bytes, write_text

T = TypeVar("T")

PRECEDENCE = "defaults < --config YAML preset < flags < KEY=VALUE overrides"


class ConfigError(ValueError):
    """A preset, a flag or an override does not fit the job's config."""


# -- building configs ----------------------------------------------------------------------


def load_config(
    cls: type[T],
    preset: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    values: Mapping[str, Any] | None = None,
    base: T | None = None,
) -> T:
    """Build ``cls`` from its defaults (or ``base``), then a YAML preset (a path or URI),
    then ``values`` (dotted key -> typed value, e.g. from flags), then ``a.b=value``
    overrides. Raises ConfigError naming the key on an unknown key or a wrong type."""
    try:
        merged = OmegaConf.structured(cls if base is None else base)
        if preset is not None:
            data = yaml.safe_load(read_bytes(str(preset)).decode("utf-8")) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"{preset}: expected a mapping at the top level")
            merged = OmegaConf.merge(merged, OmegaConf.create(data))
        for key, value in (values or {}).items():
            OmegaConf.update(merged, key, value, merge=False)
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key.sub=value, got {bad}")
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(_short(exc)) from None
    assert isinstance(obj, cls)
    return obj


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config from its stored (resolved) form, e.g. a checkpoint's ``config.yaml``."""
    try:
        obj = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), data))
    except OmegaConfBaseException as exc:
        raise ConfigError(_short(exc)) from None
    assert isinstance(obj, cls)
    return obj


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-safe dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def dump_config(cfg: Any, path: str | Path | None = None) -> str:
    """The resolved config as YAML; also written (atomically) to ``path`` (a path or URI)."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    if path is not None:
        write_text(str(path), text)
    return text


def _short(exc: OmegaConfBaseException) -> str:
    # OmegaConf messages carry a multi-line "full_key/object_type" trailer; keep the first line
    # and the key it names.
    first = str(exc).splitlines()[0]
    key = getattr(exc, "full_key", None)
    return f"{key}: {first}" if key else first


# -- describing configs --------------------------------------------------------------------


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> attribute docstring (the string literal right after the field) of a
    dataclass and its dataclass bases; fields without one are left out."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # no source (built at run time)
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, after in itertools.pairwise(body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


@dataclasses.dataclass(frozen=True)
class KeyDoc:
    """One dotted key of a config: ``sampling.steps``, ``int``, ``50``, its docstring."""

    key: str
    type: Any
    """The field's type (``int``, ``list[str]``, ``str | None``, a dataclass for a group)."""
    default: Any
    """Default value (``dataclasses.MISSING`` when the field has none)."""
    doc: str
    group: bool = False
    """A nested config (its keys follow it), not a value."""

    @property
    def type_name(self) -> str:
        return _type_name(self.type)


def describe_keys(cls: type, base: Any = None) -> list[KeyDoc]:
    """Every dotted key of the config class ``cls``, depth first in field order; groups
    (nested dataclasses) come before their keys. Defaults are ``base``'s values when given."""
    if base is None:
        with_defaults = all(
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            for f in dataclasses.fields(cls)
        )
        base = cls() if with_defaults else None
    return list(_walk(cls, base, ""))


def _walk(cls: type, value: Any, prefix: str) -> typing.Iterator[KeyDoc]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], prefix + f.name
        default = getattr(value, f.name) if value is not None else _field_default(f)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            doc = docs.get(f.name) or inspect.cleandoc(tp.__doc__ or "")
            yield KeyDoc(key, tp, dataclasses.MISSING, doc, group=True)
            yield from _walk(tp, None if default is dataclasses.MISSING else default, key + ".")
        else:
            yield KeyDoc(key, tp, default, docs.get(f.name, ""))


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _show(value: Any) -> str:
    return "(required)" if value is dataclasses.MISSING else repr(value)


def format_keys(cls: type, base: Any = None, width: int | None = None) -> str:
    """Every dotted key of ``cls`` with its type, default and docstring, as an argparse
    epilog (indented lines, kept as written by :class:`HelpFormatter`)."""
    width = width or min(max(shutil.get_terminal_size().columns - 2, 60), 110)
    lines = [f"config keys, set with KEY=VALUE (lists as [a,b]); precedence: {PRECEDENCE}:", ""]
    for item in describe_keys(cls, base):
        if item.group:
            lines.append(f"  {item.key}.*  ({item.type_name})")
        else:
            lines.append(f"  {item.key}: {item.type_name} = {_show(item.default)}")
        for paragraph in item.doc.split("\n\n") if item.doc else []:
            lines += textwrap.wrap(
                " ".join(paragraph.split()),
                width,
                initial_indent="      ",
                subsequent_indent="      ",
                break_on_hyphens=False,
            )
    return "\n".join(lines)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but description and epilog blocks (separated by blank lines)
    whose lines are indented are kept as written, so the key listing stays a table."""

    # _fill_text is the hook argparse's own RawDescriptionHelpFormatter overrides.
    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in text.split("\n\n"):
            lines = block.splitlines()
            if any(line.startswith(" ") for line in lines):
                blocks.append("\n".join(indent + line for line in lines))
            else:
                blocks.append(super()._fill_text(block, width, indent))
        return "\n\n".join(blocks)


# -- command lines -------------------------------------------------------------------------


class ArgumentAdder(typing.Protocol):
    """An argparse parser or argument group."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any: ...


class ConfigCLI(Generic[T]):
    """The argparse side of one config class: ``--config`` preset, flags aliasing dotted keys
    (help from the field docstrings), ``KEY=VALUE`` overrides, and an epilog listing every
    key. See the module docstring for an example.

    ``preset`` is ``"optional"``, ``"required"`` or ``"none"`` (no ``--config`` flag);
    ``base`` replaces the class defaults (e.g. a named preset instance).
    """

    def __init__(
        self,
        cls: type[T],
        *,
        preset: Literal["optional", "required", "none"] = "optional",
        base: T | None = None,
    ) -> None:
        self.cls, self.preset, self.base = cls, preset, base
        self.keys = {k.key: k for k in describe_keys(cls, base)}
        self._flags: list[str] = []

    def parser(self, prog: str, description: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A new parser with :meth:`add_arguments` applied (``kwargs`` go to argparse)."""
        parser = argparse.ArgumentParser(
            prog=prog, description=description, formatter_class=HelpFormatter, **kwargs
        )
        self.add_arguments(parser)
        return parser

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add ``--config`` (unless ``preset="none"``) and the ``KEY=VALUE`` overrides, and
        append the key listing to the epilog. The parser should use :class:`HelpFormatter`."""
        if self.preset != "none":
            parser.add_argument(
                "--config",
                required=self.preset == "required",
                metavar="YAML",
                help="YAML preset (a path or URI) over the defaults; see jobs/",
            )
        parser.add_argument(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help=f"dotted config overrides, e.g. {self._example()} (every key is listed below)",
        )
        listing = format_keys(self.cls, self.base)
        parser.epilog = f"{parser.epilog}\n\n{listing}" if parser.epilog else listing

    def _example(self) -> str:
        """``key=value`` of the most nested numeric key, for the overrides' help."""
        numbers = [k for k in self.keys.values() if type(k.default) in (int, float)]
        leaf = max(numbers, key=lambda k: k.key.count("."), default=None)
        return "a.b=1" if leaf is None else f"{leaf.key}={leaf.default}"

    def flag(
        self,
        parser: ArgumentAdder,
        *names: str,
        key: str | None = None,
        required: bool = False,
        **kwargs: Any,
    ) -> None:
        """Add a flag that sets one dotted key (``key`` defaults to the first long name:
        ``--side-by-side`` -> ``side_by_side``). Its help is the field's docstring, its type
        the field's; ``kwargs`` (``choices``, ``metavar``, ``help``) go to argparse."""
        key = key or names[0].lstrip("-").replace("-", "_")
        item = self.keys.get(key)
        if item is None or item.group:
            raise ValueError(f"{names[0]}: {key!r} is not a key of {self.cls.__name__}")
        doc = " ".join(item.doc.split()) or "(no description)"
        comma = " (comma-separated)" if typing.get_origin(item.type) is list else ""
        kwargs.setdefault("help", f"{doc}{comma} [{key}; default {_show(item.default)}]")
        kwargs["help"] = kwargs["help"].replace("%", "%%")
        if item.type is bool:
            kwargs.setdefault("action", argparse.BooleanOptionalAction)
        else:
            kwargs.setdefault("type", _converter(item.type))
            kwargs.setdefault("metavar", key.rsplit(".", 1)[-1].upper())
        parser.add_argument(*names, dest=f"key:{key}", default=None, required=required, **kwargs)
        self._flags.append(key)

    def config(self, args: argparse.Namespace) -> T:
        """The config of parsed ``args``: defaults (or ``base``) < ``--config`` < flags given
        < overrides. Raises ConfigError (naming the key) when something does not fit."""
        values = {k: getattr(args, f"key:{k}") for k in self._flags}
        return load_config(
            self.cls,
            getattr(args, "config", None) if self.preset != "none" else None,
            getattr(args, "overrides", None) or (),
            values={k: v for k, v in values.items() if v is not None},
            base=self.base,
        )


def _converter(tp: Any) -> Callable[[str], Any]:
    """argparse ``type=`` for a field type; named after it (argparse prints the name)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    inner = [a for a in args if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(inner) == 1:
        item = _converter(inner[0])

        def optional(text: str) -> Any:
            return None if text.lower() in ("none", "null") else item(text)

        return _named(optional, _type_name(tp))
    if tp in (int, float, str):
        return typing.cast(Callable[[str], Any], tp)
    if origin is list:
        item = _converter(args[0]) if args else str

        def comma_list(text: str) -> list[Any]:
            text = text.strip().removeprefix("[").removesuffix("]")
            return [item(x.strip()) for x in text.split(",") if x.strip()]

        return _named(comma_list, _type_name(tp))
    return _named(yaml.safe_load, _type_name(tp))


def _named(fn: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    convert = functools.partial(fn)  # a copy that can carry its own name
    convert.__name__ = name  # type: ignore[attr-defined]
    return convert
