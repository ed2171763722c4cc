"""JSON config loading with a real schema (pydantic), and one-line errors.

Every config file is a JSON object validated by a ``StrictModel``: unknown keys
are refused, except keys that start with ``_``, which are free-form comments
(a model may still declare one, such as ``_target_tokens``, as an alias).
Validation does no I/O beyond reading the file itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from .errors import UserError

M = TypeVar("M", bound="StrictModel")


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, ``_comments`` are dropped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_comments(cls, data: Any) -> Any:
        if isinstance(data, dict):
            declared = {f.alias or name for name, f in cls.model_fields.items()}
            return {k: v for k, v in data.items() if not (k.startswith("_") and k not in declared)}
        return data


def describe_validation_error(err: ValidationError) -> tuple[str, str]:
    """(field path, message) of the first problem, plus a count of the others."""
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = first["msg"]
    if "input" in first and first["type"] != "missing":
        msg += f", got {json.dumps(first['input'], default=str)[:80]}"
    more = len(err.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return field, msg


def validate(model: type[M], data: Any, path: str | Path) -> M:
    """Validate already-parsed data; raise ``UserError`` naming ``path`` and the field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        field, msg = describe_validation_error(err)
        raise UserError(msg, path=path, field=field) from None


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a missing or malformed file is a ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError("file not found (expected a JSON config file)", path=path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}", path=path) from None
    except UnicodeDecodeError:
        raise UserError("not UTF-8 text (expected a JSON config file)", path=path) from None


def load_config(model: type[M], path: str | Path, overrides: dict[str, Any] | None = None) -> M:
    """Read, apply command-line ``overrides`` (non-None values only), validate."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError("expected a JSON object at the top level", path=path)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return validate(model, data, path)
