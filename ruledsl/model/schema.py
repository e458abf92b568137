"""Rule files against schemas/rule.schema.json (docs/language.md §1: validated before anything else runs).

Each violation becomes an E010 diagnostic at the YAML node it concerns, with the
schema's own description of the field as the hint, so editors (which show the
same descriptions on hover) and the linter teach the same thing.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ruledsl.lang.errors import Diagnostic
from ruledsl.model.yaml_source import YamlDocument
from ruledsl.resources import data_dir

if TYPE_CHECKING:
    import jsonschema

SCHEMA_FILE = "rule.schema.json"


@functools.cache
def rule_schema() -> dict[str, Any]:
    return json.loads((data_dir("schemas") / SCHEMA_FILE).read_text(encoding="utf-8"))


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema  # here, not at the top: a training process loading the builtin rules never needs it

    return jsonschema.Draft202012Validator(rule_schema())


def schema_problems(document: YamlDocument) -> list[Diagnostic]:
    """Every schema violation of the document's data, in file order."""
    if document.data is None:
        return [Diagnostic("E010", "the file is empty: a rule file holds one mapping of fields",
                           document.span_of(()), hint=_example_hint())]
    problems = []
    data = document.data
    if isinstance(data, dict):  # jsonschema matches key patterns with re: a key must be text first
        for key in [k for k in data if not isinstance(k, str)]:
            problems.append(Diagnostic("E010", f"unknown field {key!r}: field names are text",
                                       document.span_of((key,), key=True), field=str(key),
                                       hint="remove it, or name it x-… to keep your own data in the file"))
        data = {k: v for k, v in data.items() if isinstance(k, str)}
    for error in _validator().iter_errors(data):
        problems.extend(_diagnostics(error, document))
    return sorted(problems, key=lambda d: (d.span.start if d.span else 0))


def _diagnostics(error: jsonschema.ValidationError, document: YamlDocument) -> list[Diagnostic]:
    path = tuple(error.absolute_path)
    where = _path_words(path)
    hint = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "required":
        missing = _quoted(error.message)
        return [Diagnostic("E010", f"{where}the required field '{missing}' is missing", document.span_of(path),
                           hint=_field_description(path + (missing,)), field=_top(path + (missing,)))]
    if error.validator == "additionalProperties":
        return [Diagnostic("E010", f"{where}unknown field '{key}'", document.span_of(path + (key,), key=True),
                           hint=_unknown_field_hint(path), field=_top(path + (key,)))
                for key in _unexpected_keys(error)]
    if error.validator == "type" and not path:
        return [Diagnostic("E010", f"a rule file must be a mapping of fields, not {_described(error.instance)}",
                           document.span_of(()), hint=_example_hint())]
    return [Diagnostic("E010", f"{where}{_reworded(error)}", document.span_of(path), hint=hint,
                       field=_top(path))]


def _reworded(error: jsonschema.ValidationError) -> str:
    value, schema = error.instance, error.schema
    if not isinstance(schema, Mapping):  # a boolean schema (`false`): jsonschema's own words
        return error.message
    if error.validator == "enum":
        return f"{value!r} is not one of {', '.join(map(str, schema['enum']))}"
    if error.validator == "type":
        return f"expected {_type_words(schema['type'])}, got {_described(value)}"
    if error.validator == "oneOf":
        return f"{_shown(value)} has the wrong shape"
    return error.message


def _unexpected_keys(error: jsonschema.ValidationError) -> list[Any]:
    schema, instance = error.schema, error.instance
    if not isinstance(schema, Mapping) or not isinstance(instance, Mapping):
        return []  # additionalProperties fails only an object against an object schema
    known = set(schema.get("properties", {}))
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [k for k in instance
            if k not in known and not (isinstance(k, str) and any(p.search(k) for p in patterns))]


def _unknown_field_hint(path: tuple) -> str:
    schema = _subschema(path)
    known = ", ".join(schema.get("properties", {}))
    extension = " (or an extension key starting with 'x-')" if schema.get("patternProperties") else ""
    return f"known fields here: {known}{extension}"


def _subschema(path: tuple) -> dict[str, Any]:
    schema = rule_schema()
    for part in path:
        if isinstance(part, int):
            schema = schema.get("items", {})
        else:
            schema = schema.get("properties", {}).get(part) or schema.get("additionalProperties") or {}
        if not isinstance(schema, dict):
            return {}
    return schema


def _field_description(path: tuple) -> str | None:
    return _subschema(path).get("description")


def _path_words(path: tuple) -> str:
    if not path:
        return ""
    words = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))
    return f"{words}: "


def _top(path: tuple) -> str | None:
    return str(path[0]) if path else None


def _quoted(message: str) -> str:
    match = re.match(r"'(.*)' is a required property", message)
    return match.group(1) if match else message


def _type_words(types: str | list[str]) -> str:
    names = {"string": "a string", "integer": "a whole number", "number": "a number", "array": "a list",
             "object": "a mapping", "boolean": "true or false", "null": "null"}
    types = [types] if isinstance(types, str) else types
    return " or ".join(names.get(t, t) for t in types)


def _described(value: Any) -> str:
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    kind = {str: "the string", bool: "the boolean"}.get(type(value), "the number")
    return f"{kind} {_shown(value)}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _example_hint() -> str:
    return "e.g. name: …, trainers: [grpo], metric: …, condition: \"< 0.5\", severity: high, message: …"
