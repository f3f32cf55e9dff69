"""Validation of the merged configuration: unknown keys and wrong types are errors, not silent no-ops.

The JSON Schema is built from the dataclasses in jobs/config/settings.py, the same definition the code
reads its settings through, so a key exists exactly when a dataclass declares it (and defaults.yaml, which
must give every key a value, is checked against it on every load). jsonschema does the validating; this
module builds the schema and turns the errors into one message per mistake, with the closest valid key.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal

JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
# keys that were replaced: their error says where the setting went
MOVED = {
    "publish.recipe.duration_s_min": "clips.min_s (clips are the unit of curation; annotate.max_duration_s "
                                     "stays the processing ceiling)",
    "publish.recipe.duration_s_max": "clips.max_s (clips are the unit of curation; annotate.max_duration_s "
                                     "stays the processing ceiling)",
}


def type_schema(hint) -> dict:
    """The JSON Schema of one annotated type (see settings.py's typing rules)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return dataclass_schema(hint)
    if hint is Any:
        return {}
    if hint in JSON_TYPES:
        return {"type": JSON_TYPES[hint]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"unsupported settings type {hint}")
        inner = type_schema(options[0])
        if "type" in inner:
            return {**inner, "type": [inner["type"], "null"]}
        return {"anyOf": [inner, {"type": "null"}]}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0])}
    if origin is dict:  # a free-form map: the keys are the user's own
        return {"type": "object", "additionalProperties": type_schema(args[1])}
    raise TypeError(f"unsupported settings type {hint}")


def dataclass_schema(cls) -> dict:
    """An object with exactly the dataclass's fields (command-line inputs excluded), every one required."""
    hints = typing.get_type_hints(cls)
    props = {f.name: type_schema(hints[f.name]) for f in dataclasses.fields(cls)
             if not f.metadata.get("command_line")}
    return {"type": "object", "properties": props, "required": sorted(props), "additionalProperties": False}


def config_errors(raw: dict, settings_class) -> list[str]:
    """Every mistake in `raw` as a message naming the key (and the closest valid key, when there is one)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(dataclass_schema(settings_class))
    messages = []
    for err in sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in err.absolute_path)
        if err.validator == "additionalProperties" and "properties" in err.schema:
            known = sorted(err.schema["properties"])
            for key in sorted(set(err.instance) - set(known)):
                dotted = f"{where}.{key}" if where else key
                if dotted in MOVED:
                    messages.append(f"config key '{dotted}' was replaced by {MOVED[dotted]}")
                    continue
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"; did you mean '{(where + '.') if where else ''}{close[0]}'?" if close else \
                    f"; known keys here: {', '.join(known)}"
                messages.append(f"unknown config key '{dotted}'{hint}")
        elif err.validator == "required":
            messages.append(f"config key '{where + '.' if where else ''}{err.message.split(chr(39))[1]}' has no "
                            "value: jobs/config/defaults.yaml must give every key one")
        elif err.validator == "type":
            want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
            messages.append(f"config key '{where}' must be {want}, not {type(err.instance).__name__} "
                            f"({err.instance!r})")
        elif err.validator == "enum":
            choices = ", ".join(repr(v) for v in err.validator_value)
            messages.append(f"config key '{where}' must be one of {choices}, not {err.instance!r}")
        else:
            messages.append(f"config key '{where}': {err.message}")
    return messages
