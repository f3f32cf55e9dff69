"""Runs a CLI command: builds the session, attaches the warehouse, runs the stages, records the run."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from jobs.config import Config, ConfigError
from jobs.exit_codes import EXIT_BLOCKED, EXIT_BUSY, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from jobs.ledger import RunRecord, write_run
from jobs.liveness import Heartbeat, WarehouseBusy, reap_dead_runs
from jobs.session import SessionError, build_session
from jobs.storage import StorageError, check_storage
from jobs.warehouse import Warehouse

log = logging.getLogger(__name__)


NOTHING_TO_INGEST = "nothing to ingest: pass --source PATH and/or --manifest FILE"


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
    if args.command == "sql":
        from jobs.sql import run_sql

        return run_sql(spark, warehouse, args.query, args.format, args.limit)
    if args.command == "report":
        path = write_report(spark, config, warehouse, args.out)
        print(f"report: {path}")
        return EXIT_OK
    if args.command == "export":
        return run_export_command(spark, config, warehouse, args)
    if args.command in ("ingest", "annotate", "link", "publish", "run", "maintain"):
        return run_stages(spark, config, warehouse, job=args.command)
    raise ConfigError(f"unknown command {args.command}")


def _attach_gold(warehouse: Warehouse) -> None:
    """Register the warehouse's tables; the readers of gold (report, export) need it to exist."""
    if "gold.utterances" not in warehouse.attach_existing():
        raise ConfigError(f"no gold.utterances in {warehouse.root}: run `voxlake run` first")


def write_report(spark, config: Config, warehouse: Warehouse, out: str | None = None) -> str:
    """Render the dataset card; returns where it went (a file:// URL for local files)."""
    from pathlib import Path

    from jobs.report_html import render
    from jobs.stages.report import gather
    from udfs.files import local_path

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
    from jobs.stages.export import ExportRequest, run_export
    from jobs.warehouse import normalize_root

    _attach_gold(warehouse)
    summary = run_export(spark, config, warehouse, ExportRequest(
        format=args.format, out=normalize_root(args.out), where=args.where, version=args.version,
        timestamp=args.timestamp, embed_audio=args.embed_audio, segments=args.segments,
        shard_rows=args.shard_rows, shard_bytes=args.shard_mb << 20))
    print(f"exported {summary['rows']} rows ({summary['hours']:.3f} h) of gold.utterances@{summary['gold_version']} "
          f"as {summary['format']} to {normalize_root(args.out)} ({len(summary['files'])} files, export.json)")
    return EXIT_OK


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
    report_cfg = config.section("report")
    if job == "run" and report_cfg.get("after_run"):
        outcome.results["report"] = write_report(spark, config, warehouse, report_cfg.get("path"))
    elif job in ("run", "publish"):
        outcome.results["report"] = (f"`voxlake report --warehouse {warehouse.root}` writes it "
                                     "(or set report.after_run)")
    print_summary(outcome.results, outcome.record)
    return outcome.exit_code


def execute(spark, config: Config, warehouse: Warehouse, job: str) -> Outcome:
    """Run the pipeline stages of `job`, with one ledger row for the whole run."""
    from jobs.stages.annotate import register_plugins

    register_plugins(config)  # before attach: plugin annotators have silver columns too
    run_cfg = config.section("run")
    dead_after_s = float(run_cfg.get("dead_after_s", 300))
    record = RunRecord(job=job, config_hash=config.hash())
    # the lease comes first: two runs creating the tables of a new warehouse at once would collide
    with Heartbeat(warehouse, record, float(run_cfg.get("heartbeat_s", 30)), dead_after_s,
                   float(run_cfg.get("lease_wait_s", 0))):
        warehouse.attach()
        reap_dead_runs(warehouse, dead_after_s, own_run_id=record.run_id)
        return _execute_stages(spark, config, warehouse, job, record)


def _execute_stages(spark, config: Config, warehouse: Warehouse, job: str, record: RunRecord) -> Outcome:
    from jobs.catalog import RUNS, TABLES
    from jobs.stages.annotate import run_annotate
    from jobs.stages.ingest import run_ingest
    from jobs.stages.link import run_link
    from jobs.stages.maintain import run_maintain
    from jobs.stages.publish import run_publish

    results = {}
    try:
        if job == "ingest" and not (config.sources or config.manifests):
            raise ConfigError(NOTHING_TO_INGEST)
        if job == "ingest" or (job == "run" and (config.sources or config.manifests)):
            with record.stage("ingest"):
                results["ingest"] = run_ingest(spark, config, warehouse, record)
        if job in ("annotate", "run"):
            with record.stage("annotate"):
                results["annotate"] = run_annotate(spark, config, warehouse, record)
        if job in ("link", "run"):
            with record.stage("link"):
                results["link"] = run_link(spark, config, warehouse, record)
        exit_code = EXIT_OK
        if job in ("publish", "run"):
            with record.stage("publish"):
                results["publish"] = run_publish(spark, config, warehouse, record)
            if results["publish"].blocked:
                exit_code = EXIT_BLOCKED
        if job == "maintain" or (job == "run" and config.section("maintain").get("after_run")):
            with record.stage("maintain"):
                results["maintain"] = run_maintain(spark, config, warehouse, record)
        record.status = "blocked" if exit_code == EXIT_BLOCKED else "succeeded"
        record.delta_versions = {
            spec.qualified: warehouse.table_version(spec)
            for spec in TABLES if spec != RUNS
        }
    except ConfigError:
        raise
    except Exception as exc:
        record.status = "failed"
        record.message = f"{type(exc).__name__}: {exc}"[:2000]
        write_run(warehouse, record)
        raise
    write_run(warehouse, record)
    return Outcome(exit_code, record, results)


def print_summary(results: dict, record: RunRecord) -> None:
    lines = [f"run {record.run_id}: {record.status}"]
    ingest = results.get("ingest")
    if ingest:
        lines += [
            f"  listed            {ingest.listed} files",
            f"  new or changed    {ingest.new_or_changed}"
            + (f" (the listing bronze@{ingest.unchanged_since} was brought in line with)"
               if ingest.unchanged_since is not None else ""),
            f"  probed ok         {ingest.probed_ok} ({ingest.audio_seconds / 3600:.3f} h of audio)",
            f"  quarantined       {ingest.quarantined}"
            + (" (" + ", ".join(f"{k}: {v}" for k, v in sorted(ingest.errors_by_code.items())) + ")"
               if ingest.errors_by_code else ""),
        ]
        if ingest.deleted:
            lines.append(f"  deleted           {ingest.deleted} (no longer listed by their source)")
    annotate = results.get("annotate")
    if annotate:
        lines.append(f"  annotated         {annotate.annotated} files ({annotate.audio_seconds / 3600:.3f} h)"
                     + (f" in {annotate.chunks} commits" if annotate.chunks > 1 else "")
                     + (f"; stopped at the cap with {annotate.candidates - annotate.annotated} left"
                        if annotate.stopped_by_cap else ""))
        for name, m in annotate.by_annotator.items():
            lines.append(f"    {name:<11} ok {int(m['ok']):>5}  failed {int(m['failed']):>4}  "
                         f"skipped {int(m['skipped']):>4}  {m['seconds']:8.1f} s")
        if annotate.errors_by_code:
            lines.append("    failures: " + ", ".join(f"{k}: {v}" for k, v in sorted(annotate.errors_by_code.items())))
    link = results.get("link")
    if link and link.skipped:
        lines.append(f"  linked            skipped: {link.skipped}")
    elif link:
        lines.append(f"  linked            {link.files} files: {link.speaker_clusters} speaker clusters of 2+, "
                     f"{link.duplicate_groups} duplicate groups ({link.duplicates} copies not kept)")
    publish = results.get("publish")
    if publish:
        if publish.blocked:
            lines.append("  PUBLISH BLOCKED   critical checks failed, gold unchanged: "
                         + ", ".join(f"{c['name']} (observed {c['observed']})" for c in publish.failed_checks))
        else:
            lines.append(f"  judged            {publish.candidates} files: {publish.published} curated, "
                         f"{publish.quarantined} quarantined")
            if publish.removed:
                lines.append(f"  removed from gold {publish.removed} (audio no listed file holds any more)")
        if publish.rejected_by:
            lines.append("    rejected by: " + ", ".join(f"{k}: {v}" for k, v in sorted(publish.rejected_by.items())))
        if publish.docs_path:
            lines.append(f"  data docs         {publish.docs_path}")
    if results.get("report"):
        lines.append(f"  dataset report    {results['report']}")
    maintain = results.get("maintain")
    if maintain:
        lines.append(f"  maintained        compacted {len(maintain.compacted)} tables, vacuumed "
                     f"{sum(maintain.vacuumed.values())} files")
    if record.delta_versions:
        lines.append("  delta versions    " + ", ".join(f"{k}@{v}" for k, v in record.delta_versions.items()
                                                      if v is not None))
    lines.append(f"  wall seconds      { {k: v for k, v in record.stage_seconds.items() if '.' not in k} }")
    print("\n".join(lines))
