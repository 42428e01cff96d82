"""Telegram's Bot API, machine-readable, as the sandbox's rule book.

``spec/bot-api.json`` is Telegram's Bot API 10.1 scraped from its documentation by the public project
PaulSonOfLars/telegram-bot-api-spec (MIT licence, ``spec/LICENSE``). It names every method and type with its
fields, their types (``"Integer"``, ``"Array of PhotoSize"``, ``"InputFile"`` ...) and whether each is required.

Two uses:
- requests: :func:`coerce_params` turns the bot's parameters (form strings, JSON values, uploads) into typed
  values and refuses missing required fields and wrong types, the way Telegram answers 400;
- responses: :func:`check_object` lists every way an object the sandbox returns strays from the spec
  (missing required field, wrong type, unknown field), so tests can prove the sandbox speaks the real API.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).with_name("spec") / "bot-api.json"

_MUST_BE = re.compile(r"must be ([a-z_]+)\b")


class SpecError(ValueError):
    """A value does not match the spec; ``str(error)`` reads like Telegram's description after "Bad Request: "."""


@dataclass(frozen=True)
class Field:
    """One field of a method or type: its name, the alternative types it accepts, and whether it is required."""

    name: str
    types: tuple[str, ...]
    required: bool
    constant: str | None  # for discriminator fields such as InputMediaPhoto.type ("must be photo")


@dataclass(frozen=True)
class Shape:
    """A method's parameters or a type's fields; ``subtypes`` is set for unions such as InputMedia."""

    name: str
    fields: dict[str, Field]
    subtypes: tuple[str, ...] = ()
    returns: tuple[str, ...] = ()


@dataclass(frozen=True)
class BotApiSpec:
    """The whole Bot API: methods and types by name."""

    version: str
    methods: dict[str, Shape]
    types: dict[str, Shape]

    def method(self, name: str) -> Shape | None:
        """The method called ``name``; Telegram matches method names case-insensitively."""
        found = self.methods.get(name)
        if found is not None:
            return found
        for known, shape in self.methods.items():
            if known.lower() == name.lower():
                return shape
        return None


def _fields(raw: list[dict[str, Any]], with_constants: bool) -> dict[str, Field]:
    fields: dict[str, Field] = {}
    for entry in raw:
        constant = None
        if with_constants and entry["name"] in {"type", "source", "status"} and entry["types"] == ["String"]:
            match = _MUST_BE.search(entry.get("description", ""))
            constant = match.group(1) if match else None
        fields[entry["name"]] = Field(entry["name"], tuple(entry["types"]), bool(entry["required"]), constant)
    return fields


@cache
def load_spec(path: Path = SPEC_PATH) -> BotApiSpec:
    """Read the spec file once per process."""
    data = json.loads(path.read_text(encoding="utf-8"))
    methods = {
        name: Shape(name, _fields(m.get("fields", []), False), returns=tuple(m.get("returns", [])))
        for name, m in data["methods"].items()
    }
    types = {
        name: Shape(name, _fields(t.get("fields", []), True), subtypes=tuple(t.get("subtypes", [])))
        for name, t in data["types"].items()
    }
    return BotApiSpec(data["version"], methods, types)


# ---------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Upload:
    """A file the bot uploaded in a multipart request."""

    filename: str
    content_type: str
    data: bytes


def _check_value(spec: BotApiSpec, type_expr: str, value: Any, where: str, strict: bool) -> None:
    """Raise :class:`SpecError` unless ``value`` is a ``type_expr``.

    ``strict`` (used for responses) also refuses fields the spec does not know; Telegram itself ignores unknown
    fields in requests, so requests are checked with ``strict=False``.
    """
    if type_expr.startswith("Array of "):
        if not isinstance(value, list):
            raise SpecError(f'field "{where}" must be an Array')
        inner = type_expr.removeprefix("Array of ")
        for index, item in enumerate(value):
            _check_value(spec, inner, item, f"{where}[{index}]", strict)
        return
    if type_expr == "Integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise SpecError(f'field "{where}" must be an Integer')
        return
    if type_expr == "Float":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SpecError(f'field "{where}" must be a Float')
        return
    if type_expr == "String":
        if not isinstance(value, str):
            raise SpecError(f'field "{where}" must be a String')
        return
    if type_expr == "Boolean":
        if not isinstance(value, bool):
            raise SpecError(f'field "{where}" must be a Boolean')
        return
    if type_expr == "InputFile":
        if not isinstance(value, Upload):
            raise SpecError(f'field "{where}" must be an uploaded file')
        return
    shape = spec.types.get(type_expr)
    if shape is None:
        raise SpecError(f'field "{where}" has a type unknown to the spec: {type_expr}')
    if shape.subtypes:
        _check_union(spec, shape.subtypes, value, where, strict)
        return
    check_fields(spec, shape, value, where, strict)


def _check_union(spec: BotApiSpec, alternatives: tuple[str, ...], value: Any, where: str, strict: bool) -> None:
    """Accept ``value`` if it is any of ``alternatives``; report the error of the closest one otherwise."""
    errors: list[SpecError] = []
    for alternative in alternatives:
        try:
            _check_value(spec, alternative, value, where, strict)
        except SpecError as error:
            errors.append(error)
        else:
            return
    # A discriminator mismatch ("must be photo") is the least interesting error: prefer any other.
    meaningful = [e for e in errors if "must be equal to" not in str(e)]
    raise (meaningful or errors)[0]


def check_fields(spec: BotApiSpec, shape: Shape, value: Any, where: str, strict: bool) -> None:
    """Check an object (a dict) against a type's fields."""
    if not isinstance(value, dict):
        raise SpecError(f'field "{where}" must be an Object of type {shape.name}')
    for field in shape.fields.values():
        if field.name not in value:
            if field.required:
                raise SpecError(f'field "{where}.{field.name}" is required in {shape.name}')
            continue
        item = value[field.name]
        if field.constant is not None and item != field.constant:
            raise SpecError(f'field "{where}.{field.name}" must be equal to "{field.constant}"')
        _check_any(spec, field.types, item, f"{where}.{field.name}", strict)
    if strict:
        unknown = sorted(set(value) - set(shape.fields))
        if unknown:
            raise SpecError(f'field "{where}" has fields unknown to {shape.name}: {", ".join(unknown)}')


def _check_any(spec: BotApiSpec, types: tuple[str, ...], value: Any, where: str, strict: bool) -> None:
    if len(types) == 1:
        _check_value(spec, types[0], value, where, strict)
    else:
        _check_union(spec, types, value, where, strict)


def check_object(type_expr: str, value: Any, spec: BotApiSpec | None = None) -> list[str]:
    """Every way ``value`` strays from ``type_expr`` (empty when it conforms); strict about unknown fields."""
    spec = spec or load_spec()
    try:
        _check_value(spec, type_expr, value, type_expr.removeprefix("Array of "), strict=True)
    except SpecError as error:
        return [str(error)]
    return []


def check_result(method: Shape, result: Any, spec: BotApiSpec | None = None) -> list[str]:
    """Check a method's result against any of its documented return types."""
    spec = spec or load_spec()
    try:
        _check_any(spec, method.returns, result, "result", strict=True)
    except SpecError as error:
        return [str(error)]
    return []


def _decode_form_value(types: tuple[str, ...], raw: str) -> Any:
    """Turn a form field (always a string on the wire) into the JSON value Telegram would read."""
    if "String" in types:
        if "Integer" in types and re.fullmatch(r"-?\d+", raw):
            return int(raw)
        return raw
    if types == ("Boolean",) and raw in {"True", "False"}:
        return raw == "True"
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # the type check below names the field


def coerce_params(spec: BotApiSpec, method: Shape, raw: dict[str, Any], from_form: bool) -> dict[str, Any]:
    """Typed parameters for ``method`` from a request's fields; raise :class:`SpecError` on any mismatch.

    ``from_form``: values are strings (urlencoded or multipart) and must be decoded as Telegram does; JSON
    bodies carry typed values already. Fields the method does not know are dropped, as Telegram ignores them.
    """
    params: dict[str, Any] = {}
    for field in method.fields.values():
        if field.name not in raw or raw[field.name] is None:
            if field.required:
                raise SpecError(f"parameter \"{field.name}\" is required")
            continue
        value = raw[field.name]
        if isinstance(value, str) and from_form:
            value = _decode_form_value(field.types, value)
        elif isinstance(value, Upload) and "InputFile" not in field.types:
            raise SpecError(f'field "{field.name}" can\'t be a file')
        _check_any(spec, field.types, value, field.name, strict=False)
        params[field.name] = value
    return params
