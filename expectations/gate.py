"""The publish gate: Great Expectations suites from the reviewable YAML files beside this module.

Row suites (files.yaml per file, clips.yaml per clip): each expectation becomes a Spark condition, so every row's failed expectation names are a
column computed in the executors (nothing per row travels to the driver, whatever the batch size). GX
validates the same suite on the batch with a bounded result format for the Data Docs, and its
unexpected counts must equal the Spark ones (a disagreement is a bug and stops the run).
Table suite: GX decides; any failure stops publishing. Results and Data Docs live in a GX file context
under the warehouse.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

SUITES_DIR = Path(__file__).resolve().parent
# A row's column naming the cascade's check that gated its file's expensive annotators (null: not gated).
# An expectation with `unless_gated: true` asks for a value such an annotator gives: it applies only to
# the rows whose file was not gated (GX: the same condition as its row_condition).
GATED_BY = "gated_by"
UNLESS_GATED = f"{GATED_BY} IS NULL"
PLACEHOLDER = re.compile(r"^\$\{(recipe|critical|clips)\.([A-Za-z0-9_]+)\}$")


@dataclass
class GateResult:
    success: bool
    unexpected: dict[str, int] = field(default_factory=dict)  # row suite: expectation -> failing rows
    failed: list[dict] = field(default_factory=list)  # [{name, observed}] for table-level failures
    docs_path: str | None = None


def load_suite_spec(name: str, values: dict[str, dict]) -> dict:
    """Read expectations/<name>.yaml and fill ${recipe.X} / ${critical.X} / ${clips.X} from `values`."""
    spec = yaml.safe_load((SUITES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))

    def fill(v):
        if isinstance(v, str) and (m := PLACEHOLDER.match(v)):
            section, key = m.groups()
            if key not in values.get(section, {}):
                raise KeyError(f"expectations/{name}.yaml needs publish.{section}.{key} in the config")
            return values[section][key]
        if isinstance(v, list):
            return [fill(x) for x in v]
        return v

    optional = set(values.get("recipe", {}).get("optional_annotators") or [])
    expectations = []
    for e in spec["expectations"]:
        e = {k: fill(v) for k, v in e.items()}
        if e.pop("when", True) is False or e.pop("annotator", None) in optional:
            continue
        if e["type"].endswith("_to_be_between") and e.get("min_value") is None and e.get("max_value") is None:
            continue  # both bounds set to null in the config: the check is off
        expectations.append(e)
    return {"name": spec["name"], "expectations": expectations}


def failure_condition(e: dict):
    """The Spark condition under which a row fails expectation `e` (GX's semantics: only
    not_be_null fails a null value)."""
    from pyspark.sql import functions as F

    col, kind = F.col(e["column"]), e["type"]
    if e.get("unless_gated"):
        return F.col(GATED_BY).isNull() & failure_condition({k: v for k, v in e.items() if k != "unless_gated"})
    if kind == "expect_column_values_to_not_be_null":
        return col.isNull()
    if kind == "expect_column_values_to_be_null":
        return col.isNotNull()
    if kind == "expect_column_values_to_be_between":
        low, high = e.get("min_value"), e.get("max_value")
        out = F.lit(False)
        if low is not None:
            out = out | (col < F.lit(low))
        if high is not None:
            out = out | (col > F.lit(high))
        return col.isNotNull() & out
    if kind == "expect_column_values_to_be_in_set":
        return col.isNotNull() & ~col.isin(list(e["value_set"]))
    if kind == "expect_column_values_to_not_be_in_set":
        return col.isNotNull() & col.isin(list(e["value_set"]))
    raise ValueError(f"row expectation {e['name']}: type {kind} has no row condition; use one of "
                     "be_null, not_be_null, be_between, be_in_set, not_be_in_set")


def with_row_failures(df, suite_spec: dict):
    """`df` plus `failed_expectations` (names, sorted; null when the row passes) and `rejected` (0/1)."""
    from pyspark.sql import functions as F

    names = sorted(e["name"] for e in suite_spec["expectations"])
    by_name = {e["name"]: e for e in suite_spec["expectations"]}
    failed = F.filter(F.array(*[F.when(failure_condition(by_name[n]), F.lit(n)) for n in names]),
                      lambda x: x.isNotNull())
    return (df.withColumn("failed_expectations", F.when(F.size(failed) > 0, failed))
              .withColumn("rejected", F.when(F.size(failed) > 0, 1).otherwise(0)))


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def build_suite(spec: dict):
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=spec["name"])
    for e in spec["expectations"]:
        e = dict(e)
        name, kind = e.pop("name"), e.pop("type")
        if e.pop("unless_gated", False):
            e.update(row_condition=UNLESS_GATED, condition_parser="spark")
        cls = getattr(gx.expectations, _camel(kind))
        suite.add_expectation(cls(**e, meta={"name": name}))
    return suite


class Gate:
    """A GX file context (suites, validation results, Data Docs) in a local folder: the warehouse's
    `quality/` for a local warehouse, else the folder the publish stage chose (quality.docs_dir)."""

    def __init__(self, project_dir: str):
        import great_expectations as gx

        root = Path(project_dir)
        root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", project_root_dir=str(root))
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX draws a progress bar per metric batch: thousands of lines in a job log
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        # persist=False: GX would cache each validated DataFrame in the session, and a cached plan over a
        # staging table that publish removes afterwards breaks the next query that Spark matches against
        # the cache (DELTA_SCHEMA_CHANGE_SINCE_ANALYSIS); the batches are staged Delta reads already
        self.source = self.context.data_sources.add_or_update_spark("voxlake", persist=False)

    def _checkpoint(self, suite_spec: dict, result_format: dict):
        import great_expectations as gx

        name = suite_spec["name"]
        asset = next((a for a in self.source.assets if a.name == name), None) or \
            self.source.add_dataframe_asset(name)
        batch = next((b for b in asset.batch_definitions if b.name == "batch"), None) or \
            asset.add_batch_definition_whole_dataframe("batch")
        suite = self.context.suites.add_or_update(build_suite(suite_spec))
        vd = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{name}_validation", data=batch, suite=suite)
        )
        return self.context.checkpoints.add_or_update(
            gx.Checkpoint(name=f"{name}_checkpoint", validation_definitions=[vd],
                          actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                          result_format=result_format)
        )

    def validate_rows(self, df, suite_spec: dict) -> GateResult:
        """GX's view of the row suite on the batch: each expectation's unexpected count (Data Docs).

        BASIC with no example values: GX then computes every count in one aggregate over the batch. SUMMARY
        (or examples) costs extra Spark jobs per expectation (example values, their counts, row indexes),
        seconds on every publish however small; the rejected rows themselves are in ops.quarantine and
        ops.clip_quarantine with the expectations each failed."""
        checkpoint = self._checkpoint(suite_spec, {"result_format": "BASIC", "partial_unexpected_count": 0})
        result = checkpoint.run(batch_parameters={"dataframe": df})
        unexpected: dict[str, int] = {}
        for run in result.run_results.values():
            for r in run.results:
                unexpected[r.expectation_config.meta["name"]] = int(r.result.get("unexpected_count") or 0)
        return GateResult(success=not any(unexpected.values()), unexpected=unexpected, docs_path=self.docs_path())

    def validate_table(self, df, suite_spec: dict) -> GateResult:
        checkpoint = self._checkpoint(suite_spec, {"result_format": "SUMMARY"})
        result = checkpoint.run(batch_parameters={"dataframe": df})
        failed = []
        for run in result.run_results.values():
            for r in run.results:
                if not r.success:
                    failed.append({"name": r.expectation_config.meta["name"],
                                   "observed": r.result.get("observed_value", r.result.get("unexpected_percent"))})
        return GateResult(success=not failed, failed=failed, docs_path=self.docs_path())

    def docs_path(self) -> str | None:
        sites = self.context.get_docs_sites_urls()
        return sites[0]["site_url"] if sites else None
