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
    if args.command in ("ingest", "run"):
        return run_stages(spark, config, warehouse, job=args.command)
    raise ConfigError(f"unknown command {args.command}")


def run_stages(spark, config: Config, warehouse: Warehouse, job: str) -> int:
    """Run the pipeline stages that exist for `job`, with one ledger row for the whole run."""
    from jobs.cli import EXIT_OK
    from jobs.ingest import run_ingest
    from schemas.tables import BRONZE, QUARANTINE

    warehouse.attach()
    record = RunRecord(job=job, config_hash=config.hash())
    try:
        with record.stage("ingest"):
            result = run_ingest(spark, config, warehouse, record)
        record.status = "succeeded"
        record.delta_versions = {
            BRONZE.qualified: warehouse.table_version(BRONZE),
            QUARANTINE.qualified: warehouse.table_version(QUARANTINE),
        }
    except ConfigError:
        raise
    except Exception as exc:
        record.status = "failed"
        record.message = f"{type(exc).__name__}: {exc}"[:2000]
        write_run(warehouse, record)
        raise
    write_run(warehouse, record)
    print_ingest_summary(result, record)
    return EXIT_OK


def print_ingest_summary(result, record: RunRecord) -> None:
    lines = [
        f"run {record.run_id}: {record.status}",
        f"  listed            {result.listed} files",
        f"  new or changed    {result.new_or_changed}",
        f"  probed ok         {result.probed_ok} ({result.audio_seconds / 3600:.3f} h of audio)",
        f"  quarantined       {result.quarantined}"
        + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(result.errors_by_code.items())) + ")"
           if result.errors_by_code else ""),
        f"  wall seconds      {record.stage_seconds}",
    ]
    print("\n".join(lines))
