"""Strict configs: YAML in, frozen dataclasses out, unknown keys and wrong types refused by name.

Each stage owns its options dataclass (SynthOptions, PseudoLabelOptions, ...); this module only
knows how to build any of them from a mapping, with `--set a.b=v` overrides, and stops on the
first key it cannot place, naming it (nanoGPT configurator habit, made strict).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml

from edgekd.errors import ConfigError, EdgekdError


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping; safe_load only, so a config never executes code."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:  # Latin-1 files, 5000-deep nesting
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value parsed as YAML scalar/list)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.sub=value")
    key, _, raw = item.partition("=")
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each `a.b=v` applied (unknown keys are caught later by
    `from_dict`, which knows the schema)."""
    import copy

    data = copy.deepcopy(data)
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            nxt = node.get(k)
            if nxt is None:
                nxt = node[k] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: '{k}' is not a section")
            node = nxt
        node[keys[-1]] = value
    return data


def _check_type(value: Any, tp: Any, key: str, error: type[EdgekdError] = ConfigError) -> Any:
    """Coerce/validate `value` against annotation `tp`; raise `error` (ConfigError) naming `key`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, key, error)
            except error as e:
                errors.append(str(e))
        raise error(errors[0] if len(errors) == 1 else f"{key}: {value!r} fits none of {tp}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, prefix=key, error=error)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise error(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis or origin is list:
            items = [_check_type(v, item_tp, f"{key}[{i}]", error) for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise error(f"{key}: expected {len(args)} items, got {len(value)}")
            items = [_check_type(v, a, f"{key}[{i}]", error) for i, (v, a) in enumerate(zip(value, args))]
        else:
            items = list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{key}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise error(f"{key}: {value!r} is not one of {', '.join(map(repr, typing.get_args(tp)))}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise error(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise error(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return str(value)
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise error(f"{key}: expected a path, got {type(value).__name__}")
        return Path(value)
    return value


def known_fields(cls, d: dict[str, Any], what: str) -> dict[str, Any]:
    """`d` unchanged when every key is a field of dataclass `cls`; else ValueError naming the
    unknown `what` (the light check of the featurizer and model dims stored in checkpoints)."""
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(sorted(unknown))}")
    return d


def from_dict(cls, data: Any, prefix: str = "", *, error: type[EdgekdError] = ConfigError,
              exclude: tuple[str, ...] = ()):
    """Build dataclass `cls` from a mapping: unknown keys, missing required keys and wrong types raise
    `error` (ConfigError; devices pass DeviceError) naming the dotted key; the dataclass's own
    `_verify` (ValueError) becomes one too. `exclude`: fields that are not keys (set by the loader).
    The one strict builder for every config in edgekd: stage options, pipeline configs, device profiles.
    """
    where = prefix or cls.__name__

    def key(k: str) -> str:
        return f"{prefix} {k}" if prefix.endswith(":") else f"{prefix}.{k}" if prefix else k

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in exclude}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise error(f"unknown config key '{key(unknown[0])}'. Known in {where}: {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise error(f"{key(missing[0])}: missing (required)")
    kwargs = {k: _check_type(v, hints[k], key(k), error) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise error(f"{where}: {e}") from None


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain JSON/YAML-able data (tuples as lists, paths as strings)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
