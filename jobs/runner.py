"""Runs a CLI command: builds the session, attaches the warehouse, runs the stages, records the run."""
from __future__ import annotations

import logging
import sys

from jobs.config import Config, ConfigError
from jobs.ledger import RunRecord, write_run
from jobs.session import SessionError, build_session
from jobs.warehouse import Warehouse

log = logging.getLogger(__name__)


def dispatch(args, config: Config) -> int:
    from jobs.cli import EXIT_OK, EXIT_USAGE

    try:
        spark = build_session(config, app_name=f"voxlake-{args.command}")
    except SessionError as exc:
        print(f"voxlake: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    warehouse = Warehouse(spark, config.warehouse)
    if args.command == "sql":
        from jobs.sql import run_sql

        return run_sql(spark, warehouse, args.query, args.format, args.limit)
    if args.command in ("ingest", "annotate", "run"):
        return run_stages(spark, config, warehouse, job=args.command)
    raise ConfigError(f"unknown command {args.command}")


def run_stages(spark, config: Config, warehouse: Warehouse, job: str) -> int:
    """Run the pipeline stages of `job`, with one ledger row for the whole run."""
    from jobs.annotate import run_annotate
    from jobs.cli import EXIT_OK
    from jobs.ingest import run_ingest
    from schemas.silver import SILVER
    from schemas.tables import BRONZE, QUARANTINE

    warehouse.attach()
    record = RunRecord(job=job, config_hash=config.hash())
    results = {}
    try:
        if job == "ingest" or (job == "run" and (config.sources or config.manifests)):
            with record.stage("ingest"):
                results["ingest"] = run_ingest(spark, config, warehouse, record)
        elif job == "ingest":
            raise ConfigError("nothing to ingest: pass --source PATH and/or --manifest FILE")
        if job in ("annotate", "run"):
            with record.stage("annotate"):
                results["annotate"] = run_annotate(spark, config, warehouse, record)
        record.status = "succeeded"
        record.delta_versions = {
            spec.qualified: warehouse.table_version(spec) for spec in (BRONZE, SILVER, QUARANTINE)
        }
    except ConfigError:
        raise
    except Exception as exc:
        record.status = "failed"
        record.message = f"{type(exc).__name__}: {exc}"[:2000]
        write_run(warehouse, record)
        raise
    write_run(warehouse, record)
    print_summary(results, record)
    return EXIT_OK


def print_summary(results: dict, record: RunRecord) -> None:
    lines = [f"run {record.run_id}: {record.status}"]
    ingest = results.get("ingest")
    if ingest:
        lines += [
            f"  listed            {ingest.listed} files",
            f"  new or changed    {ingest.new_or_changed}",
            f"  probed ok         {ingest.probed_ok} ({ingest.audio_seconds / 3600:.3f} h of audio)",
            f"  quarantined       {ingest.quarantined}"
            + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(ingest.errors_by_code.items())) + ")"
               if ingest.errors_by_code else ""),
        ]
    annotate = results.get("annotate")
    if annotate:
        lines.append(f"  annotated         {annotate.annotated} files ({annotate.audio_seconds / 3600:.3f} h)")
        for name, m in annotate.by_annotator.items():
            lines.append(f"    {name:<10} ok {int(m['ok']):>5}  failed {int(m['failed']):>4}  "
                         f"skipped {int(m['skipped']):>4}  {m['seconds']:8.1f} s")
        if annotate.errors_by_code:
            lines.append("    failures: " + ", ".join(f"{k}: {v}" for k, v in sorted(annotate.errors_by_code.items())))
    lines.append(f"  wall seconds      { {k: v for k, v in record.stage_seconds.items() if '.' not in k} }")
    print("\n".join(lines))
