"""Runs a CLI command: builds the session, checks storage, attaches the warehouse, runs the stages under
the warehouse lease with one ledger row, and turns what happened into an exit code."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from jobs.commandline.exit_codes import EXIT_BLOCKED, EXIT_BUSY, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from jobs.commandline.summary import print_summary
from jobs.commands.export import ExportRequest, run_export
from jobs.commands.maintain import run_maintain
from jobs.commands.report import gather
from jobs.commands.report_html import render
from jobs.commands.sql import SqlError, run_sql
from jobs.config import Config, ConfigError
from jobs.io.storage import StorageError, check_storage
from jobs.spark.session import SessionError, build_session
from jobs.stages.annotate import AnnotateStage, register_plugins
from jobs.stages.ingest import IngestStage
from jobs.stages.link import LinkStage
from jobs.stages.publish import PublishStage
from jobs.stages.stage import StageContext, run_stage
from jobs.warehouse import reconcile
from jobs.warehouse.catalog import RUNS, TABLES
from jobs.warehouse.lease import Heartbeat, LeaseLost, WarehouseBusy, reap_dead_runs
from jobs.warehouse.ledger import RunRecord, write_run
from jobs.warehouse.store import Warehouse, normalize_root
from udfs.files import local_path

log = logging.getLogger(__name__)

NOTHING_TO_INGEST = "nothing to ingest: pass --source PATH and/or --manifest FILE"
PIPELINE = ("ingest", "annotate", "link", "publish")  # the stages of `voxlake run`, in order
WRITERS = ("run", *PIPELINE, "maintain")  # the commands that take the warehouse lease
CREATORS = ("run", "ingest")  # the commands that may start a new warehouse (the others need one)


def dispatch(args, config: Config) -> int:
    if args.command == "ingest" and not (config.sources or config.manifests):  # before Spark starts
        raise ConfigError(NOTHING_TO_INGEST)
    try:
        spark = build_session(config, app_name=f"voxlake-{args.command}")
    except SessionError as exc:
        print(f"voxlake: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        check_storage(spark, config)
    except StorageError as exc:
        print(f"voxlake: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    warehouse = Warehouse(spark, config.warehouse)
    if args.command not in CREATORS and warehouse.table_version(RUNS) is None:
        print(f"voxlake: error: {warehouse.root} holds no voxlake warehouse (no ops.runs table): check --warehouse, "
              f"or create one with `voxlake run --source PATH --warehouse {warehouse.root}`", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "sql":
        try:
            run_sql(spark, warehouse, args.query, args.format, args.limit)
        except SqlError as exc:
            print(f"voxlake: SQL error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK
    if args.command == "report":
        print(f"report: {write_report(spark, config, warehouse, args.out)}")
        return EXIT_OK
    if args.command == "export":
        return run_export_command(spark, config, warehouse, args)
    if args.command in WRITERS:
        return run_stages(spark, config, warehouse, job=args.command)
    raise ConfigError(f"unknown command {args.command}")


def _attach_gold(warehouse: Warehouse) -> None:
    """Register the warehouse's tables; the readers of gold (report, export) need it to exist."""
    if "gold.utterances" not in warehouse.attach_existing():
        raise ConfigError(f"no gold.utterances in {warehouse.root}: run `voxlake run` first")


def write_report(spark, config: Config, warehouse: Warehouse, out: str | None = None) -> str:
    """Render the dataset card; returns where it went (a file:// URL for local files)."""
    _attach_gold(warehouse)
    page = render(gather(spark, config, warehouse))
    target = out or f"{warehouse.root}/report.html"
    local = local_path(target)
    if local is None:
        warehouse.write_text(target, page)
        return target
    Path(local).parent.mkdir(parents=True, exist_ok=True)
    Path(local).write_text(page, encoding="utf-8")
    return Path(local).resolve().as_uri()


def run_export_command(spark, config: Config, warehouse: Warehouse, args) -> int:
    _attach_gold(warehouse)
    summary = run_export(spark, config, warehouse, ExportRequest(
        format=args.format, out=normalize_root(args.out), where=args.where, version=args.version,
        timestamp=args.timestamp, embed_audio=args.embed_audio, unit=_export_unit(args)))
    print(f"exported {summary['rows']} {summary['unit']} ({summary['hours']:.3f} h) of gold@{summary['gold_version']} "
          f"as {summary['format']} to {normalize_root(args.out)} ({len(summary['files'])} files, export.json)")
    return EXIT_OK


def _export_unit(args) -> str:
    """--unit, with --segments as its old spelling; clips by default."""
    if args.segments and args.unit not in (None, "segments"):
        raise ConfigError(f"--segments and --unit {args.unit} disagree: give one")
    return "segments" if args.segments else (args.unit or "clips")


@dataclass
class Outcome:
    exit_code: int
    record: RunRecord
    results: dict


def run_stages(spark, config: Config, warehouse: Warehouse, job: str) -> int:
    try:
        outcome = execute(spark, config, warehouse, job)
    except WarehouseBusy as exc:
        print(f"voxlake: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except LeaseLost as exc:
        print(f"voxlake: {job}: {exc}; the next run repairs what this one left", file=sys.stderr)
        return EXIT_FAILED
    if job == "run" and config.report.after_run:
        outcome.results["report"] = write_report(spark, config, warehouse, config.report.path)
    elif job in ("run", "publish"):
        outcome.results["report"] = (f"`voxlake report --warehouse {warehouse.root}` writes it "
                                     "(or set report.after_run)")
    print_summary(outcome.results, outcome.record)
    return outcome.exit_code


def execute(spark, config: Config, warehouse: Warehouse, job: str) -> Outcome:
    """Run the pipeline stages of `job`, with one ledger row for the whole run."""
    register_plugins(config)  # before attach: plugin annotators have silver columns too
    record = RunRecord(job=job, config_hash=config.hash())
    run = config.run
    # the lease comes first: two runs creating the tables of a new warehouse at once would collide
    with Heartbeat(warehouse, record, run.heartbeat_s, run.dead_after_s, run.lease_wait_s):
        warehouse.attach()
        reap_dead_runs(warehouse, run.dead_after_s, own_run_id=record.run_id)
        return _execute_stages(spark, config, warehouse, job, record)


def _reconcile(spark, warehouse: Warehouse, record: RunRecord, results: dict) -> None:
    """Bring every file's outcome in line with the tables (jobs.warehouse.reconcile)."""
    with record.stage("reconcile"):
        done = reconcile.reconcile(spark, warehouse, record.run_id)
    previous = results.get("reconcile")
    if previous is not None:
        done.gold_removed += previous.gold_removed
        done.changed += previous.changed
    results["reconcile"] = done


STAGES = {"ingest": IngestStage, "annotate": AnnotateStage, "link": LinkStage, "publish": PublishStage}


def stages_of(job: str, config: Config) -> list[str]:
    """The pipeline stages a job runs: `run` runs them all (ingest only when it names inputs)."""
    if job != "run":
        return [job] if job in STAGES else []
    return [s for s in PIPELINE if s != "ingest" or config.sources or config.manifests]


def _execute_stages(spark, config: Config, warehouse: Warehouse, job: str, record: RunRecord) -> Outcome:
    results = {}
    ctx = StageContext(spark, config, warehouse, record)
    try:
        if job == "ingest" and not (config.sources or config.manifests):
            raise ConfigError(NOTHING_TO_INGEST)
        exit_code = EXIT_OK
        _reconcile(spark, warehouse, record, results)  # whatever a crashed run left half done
        for name in stages_of(job, config):
            with record.stage(name):
                results[name] = run_stage(STAGES[name](ctx))
        if "publish" in results and results["publish"].blocked:
            exit_code = EXIT_BLOCKED
        if job == "maintain" or (job == "run" and config.maintain.after_run):
            with record.stage("maintain"):
                results["maintain"] = run_maintain(spark, config, warehouse, record)
        _reconcile(spark, warehouse, record, results)
        with record.stage("invariant"):
            results["invariant"] = reconcile.check(spark, warehouse)
        if not results["invariant"].holds:
            log.error("file outcomes: %s", results["invariant"].line())
        record.status = "blocked" if exit_code == EXIT_BLOCKED else "succeeded"
        record.delta_versions = {spec.qualified: warehouse.table_version(spec) for spec in TABLES if spec != RUNS}
    except (ConfigError, LeaseLost):
        raise  # a usage error records nothing; a run that lost its lease was recorded by its reaper
    except Exception as exc:
        record.status = "failed"
        record.message = f"{type(exc).__name__}: {exc}"[:2000]
        write_run(warehouse, record)
        raise
    write_run(warehouse, record)
    return Outcome(exit_code, record, results)
