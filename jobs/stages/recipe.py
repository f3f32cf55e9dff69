"""The curation recipe as the stages read it: the values the suites' placeholders take, and the cheap
checks the annotate stage's cascade takes from the same suites (annotators.cascade).

The cascade's checks are the suites' own floors and ceilings (expectations/files.yaml, clips.yaml, filled
from the same values), restricted to what a cheap annotator's result decides before the expensive ones
run, so the gate and the cascade cannot disagree on a bound."""
from __future__ import annotations

import dataclasses

from annotators.base import Annotator
from annotators.cascade import DURATION, Cascade, Check
from annotators.clips import WHOLE_FILE_MEASURES
from expectations.gate import failure_condition, load_suite_spec
from jobs.config import Config

# file-suite columns a cheap result holds (publish.flat_rows reads them from the same fields)
FILE_MEASURES = {"effective_hz": ("bandwidth", "effective_hz")}
# clip-suite columns of a whole-file clip: the file's own results (annotators.clips) and its duration
CLIP_MEASURES = {**WHOLE_FILE_MEASURES, "duration_s": (None, DURATION)}


def suite_values(config: Config) -> dict:
    """The values the suites' placeholders read: the recipe (and what it implies), the critical bounds and
    the clip rules."""
    recipe = dataclasses.asdict(config.publish.recipe)
    recipe["single_speaker"] = recipe["max_speakers"] == 1  # speaker_purity_floor applies
    recipe["speakers_limited"] = recipe["max_speakers"] is not None  # speakers_measured applies
    return {"recipe": recipe, "critical": dataclasses.asdict(config.publish.critical),
            "clips": dataclasses.asdict(config.clips)}


def recipe_checks(config: Config, annotators) -> Cascade | None:
    """The recipe's checks that the configured cheap annotators decide (`annotators`: the configured
    annotators or their classes); None when there are none. Link ranks duplicates by them whether or not
    the cascade is on."""
    cheap = {a.name for a in annotators if not a.expensive}
    values = suite_values(config)
    checks = []
    for suite, measures, whole in (("files", FILE_MEASURES, False), ("clips", CLIP_MEASURES, True)):
        for e in load_suite_spec(suite, values)["expectations"]:
            source = measures.get(e["column"])
            if not e["type"].endswith("_to_be_between") or source is None:
                continue
            annotator, field = source
            if annotator is None or annotator in cheap:
                checks.append(Check(e["name"], annotator, field, e.get("min_value"), e.get("max_value"), whole))
    return Cascade(tuple(checks), config.clips.max_s) if checks else None


def configured_checks(config: Config) -> Cascade | None:
    """recipe_checks of the configured annotators, by class (no model is built; a plugin not registered in
    this process cannot be a check's source, and is left out)."""
    from annotators.registry import load_class

    classes = []
    for name in config.annotate.annotators:
        try:
            classes.append(load_class(name))
        except ValueError:
            continue
    return recipe_checks(config, classes)


def cascade_for(config: Config, ordered: list[Annotator]) -> Cascade | None:
    """The cascade for these annotators under the config's recipe; None when `annotate.cascade` is off or
    there is nothing to gate (no expensive annotator, or no check a configured cheap annotator decides)."""
    if not config.annotate.cascade or not any(a.expensive for a in ordered):
        return None
    return recipe_checks(config, ordered)


def ruled_out(cascade: Cascade | None):
    """A Spark condition on silver rows: the file fails one of `cascade`'s checks, as the gate's own condition
    for a bound (expectations.gate.failure_condition) on the same result fields: an unknown value (a
    result that is not ok has null fields) rules nothing out, as in Cascade.reason. False without checks."""
    from pyspark.sql import functions as F

    out = F.lit(False)
    for check in cascade.checks if cascade else ():
        fails = failure_condition({"type": "expect_column_values_to_be_between",
                                   "column": f"{check.annotator}.{check.field}" if check.annotator else "decode.duration_s",
                                   "min_value": check.min_value, "max_value": check.max_value})
        if check.whole_file_only:
            fails = fails & (F.col("decode.duration_s") <= F.lit(cascade.whole_file_max_s))
        out = out | F.coalesce(fails, F.lit(False))
    return out
