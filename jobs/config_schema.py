"""Validation of the merged configuration: unknown keys and wrong types are errors, not silent no-ops.

The schema is a JSON Schema derived from the shipped defaults (jobs/defaults.yaml), so a key exists
exactly when the defaults declare it and the two cannot drift apart. Its types come from the default
values, except for the keys listed in NULLABLE (default null), the few in CHOICES and the free-form maps in FREE_FORM
(Spark settings, per-annotator params, plugins). jsonschema does the validating; this module only
builds the schema and turns the errors into one message per mistake, with the closest valid key.
"""
from __future__ import annotations

import difflib

# keys whose default is null, and the types a value may have
NULLABLE = {
    "spark.shuffle_partitions": ["integer", "null"],
    "run.max_files": ["integer", "null"],
    "run.max_hours": ["number", "null"],
    "quality.docs_dir": ["string", "null"],
}
# counts: whole numbers only (every other numeric key takes any number)
INTEGER = {"link.hash_rows", "link.hash_bands", "link.minhash_tables", "link.max_rounds", "link.seed",
           "ingest.files_per_task", "ingest.bytes_per_task", "ingest.max_file_bytes", "annotate.files_per_batch", "annotate.max_attempts",
           "annotate.max_worker_deaths"}
# thresholds that may be switched off with null (a range with both bounds null is not checked)
NULL_OK_UNDER = ("publish.recipe.", "publish.critical.")
# keys that take one of a few values of different types
CHOICES = {"spark.quick_jit": ["auto", True, False]}
# maps whose keys are the user's own (Spark settings, annotator names); checked elsewhere or by Spark
FREE_FORM = {"spark.conf", "annotate.params", "annotate.plugins"}


def _type_of(value) -> list[str] | str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"  # seconds, hours, thresholds: any number (whole-number keys are in INTEGER)
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def schema_from_defaults(defaults: dict, path: str = "") -> dict:
    """A JSON Schema that accepts exactly the keys of `defaults`, with the types of their values."""
    props = {}
    for key, value in defaults.items():
        dotted = f"{path}.{key}" if path else key
        if dotted in FREE_FORM:
            props[key] = {"type": ["object", "null"]}
        elif isinstance(value, dict):
            props[key] = schema_from_defaults(value, dotted)
        elif dotted in NULLABLE:
            props[key] = {"type": NULLABLE[dotted]}
        elif dotted in CHOICES:
            props[key] = {"enum": CHOICES[dotted]}
        elif value is None:
            props[key] = {}
        elif isinstance(value, list):
            item = {"type": _type_of(value[0])} if value else {}
            props[key] = {"type": "array", "items": item}
        else:
            kind = "integer" if dotted in INTEGER else _type_of(value)
            props[key] = {"type": [kind, "null"] if dotted.startswith(NULL_OK_UNDER) else kind}
    return {"type": ["object", "null"] if path else "object", "properties": props, "additionalProperties": False}


def config_errors(raw: dict, defaults: dict) -> list[str]:
    """Every mistake in `raw` as a message naming the key (and the closest valid key, when there is one)."""
    import jsonschema

    schema = schema_from_defaults(defaults)
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for err in sorted(validator.iter_errors(raw), key=lambda e: list(map(str, e.absolute_path))):
        where = ".".join(str(p) for p in err.absolute_path)
        if err.validator == "additionalProperties":
            known = sorted(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(known)):
                dotted = f"{where}.{key}" if where else key
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"; did you mean '{(where + '.') if where else ''}{close[0]}'?" if close else \
                    f"; known keys here: {', '.join(known)}"
                messages.append(f"unknown config key '{dotted}'{hint}")
        elif err.validator == "type":
            want = err.validator_value if isinstance(err.validator_value, str) else " or ".join(err.validator_value)
            messages.append(f"config key '{where}' must be {want}, not {type(err.instance).__name__} "
                            f"({err.instance!r})")
        else:
            messages.append(f"config key '{where}': {err.message}")
    return messages
