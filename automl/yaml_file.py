"""YAML files and validation messages for the files a user writes (study files, search spaces).

Two things PyYAML and pydantic leave to us: a key given twice in one mapping is refused (PyYAML
keeps the last without a word), and a validation error lists every field with the valid keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from automl.errors import ConfigError


def _model_at(model: Any, loc: tuple) -> Any:
    """The pydantic model class found by following ``loc`` from ``model`` (through fields, dict
    values, list items and optionals), or None where the path leaves the models."""
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = field.annotation
        while True:  # unwrap Optional[...], list[...], dict[str, ...], Annotated[...]
            args = [a for a in get_args(model) if a is not type(None)]
            if get_origin(model) in (list, tuple, dict) and args:
                model = args[-1]
            elif get_origin(model) is not None and len(args) == 1:
                model = args[0]
            else:
                break
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def format_validation_error(source: str, err: ValidationError, model: type[BaseModel] | None = None) -> str:
    lines = [f"{source}: {err.error_count()} invalid field(s)"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
            parent = _model_at(model, tuple(p for p in e["loc"][:-1] if not isinstance(p, int))) if model else None
            if parent is not None:
                msg += f" (valid: {', '.join(parent.model_fields)})"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


class _DuplicateKey(Exception):
    def __init__(self, key: str, first: int, second: int):
        super().__init__(key, first, second)
        self.key, self.first, self.second = key, first, second


class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys in one mapping without a word; a study file where
    ``lr`` is set twice means one of them is a mistake, so refuse it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(str(key), seen[key], line)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        doc = yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except _DuplicateKey as dup:
        raise ConfigError(f"{path}: key {dup.key!r} is given twice in one mapping (lines {dup.first} and "
                          f"{dup.second}); keep one") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return doc
