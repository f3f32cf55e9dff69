"""The `voxlake` command line. Exit codes: 0 done, 1 quality gate blocked publishing, 2 bad usage/config,
3 the job failed (an error that is not about one file: the log and ops.runs say what), 4 another run
holds the warehouse and nothing was done.

Results go to stdout; all logging goes to stderr, so `voxlake sql --format json ... | jq` works.
"""
from __future__ import annotations

import argparse
import logging
import sys

from jobs.commandline.exit_codes import EXIT_FAILED, EXIT_USAGE
from jobs.config import ConfigError, load_config

log = logging.getLogger("voxlake")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 too; keep the message short and actionable
        self.print_usage(sys.stderr)
        print(f"voxlake: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _common(p: argparse.ArgumentParser, sources: bool) -> None:
    p.add_argument("--warehouse", help="folder or URI holding the Delta tables (default: the config's `warehouse`)")
    p.add_argument("--config", help="YAML file merged over the shipped defaults (jobs/config/defaults.yaml)")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="debug logging, and libraries' INFO lines")
    loud.add_argument("-q", "--quiet", action="store_true", help="warnings and the final summary only")
    if sources:
        p.add_argument("--source", action="append", default=[], metavar="PATH",
                       help="folder, file URI or audio table (Parquet/Delta); repeatable")
        p.add_argument("--manifest", action="append", default=[], metavar="FILE",
                       help="JSON Lines manifest: {path, text?, language?, speaker?, ...}; repeatable")
        p.add_argument("--max-files", type=int, metavar="N",
                       help="cap this run's annotate work (it stops after the chunk that reaches N files)")
        p.add_argument("--max-hours", type=float, metavar="H", help="cap this run's annotate work in audio hours")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="voxlake", description="Speech audio → curated, quality-checked Delta tables.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, help_text in [
        ("run", "ingest → annotate → link → validate → publish, incrementally"),
        ("ingest", "list, probe and hash audio files into bronze.audio_files"),
    ]:
        _common(sub.add_parser(name, help=help_text), sources=True)
    _common(sub.add_parser("annotate", help="annotate bronze audio into silver.annotations"), sources=True)
    _common(sub.add_parser("link", help="speaker clusters and duplicate groups across silver (Spark LSH)"),
            sources=False)
    publish = sub.add_parser("publish", help="validate silver with the GX suites; publish gold, quarantine the rest")
    _common(publish, sources=True)
    publish.add_argument("--accept", metavar="RUN_ID",
                         help="publish the batch a blocked run left pending, after review (publish.accept_run)")
    _common(sub.add_parser("maintain", help="table upkeep: compaction, deletion vectors on silver, vacuum"),
            sources=False)
    export = sub.add_parser("export", help="gold at a pinned version → nemo / lhotse / hf / webdataset files")
    _common(export, sources=False)
    export.add_argument("--format", required=True, choices=["nemo", "lhotse", "hf", "webdataset"])
    export.add_argument("--out", required=True, metavar="DIR", help="folder or URI for the shards and export.json")
    export.add_argument("--where", metavar="SQL",
                        help="a predicate over the unit's table (gold.clips by default), e.g. \"language = 'en'\"")
    pin = export.add_mutually_exclusive_group()
    pin.add_argument("--version", type=int, help="gold.utterances version (default: the current one)")
    pin.add_argument("--timestamp", help="gold as of this time (ISO 8601, UTC unless it says)")
    export.add_argument("--embed-audio", action="store_true", help="hf: put the audio bytes in the Parquet files")
    export.add_argument("--unit", choices=["clips", "files", "segments"], default=None,
                        help="what one exported row is: a curated clip (gold.clips, the default), a file "
                             "(gold.utterances) or an ASR segment (gold.segments; nemo, lhotse)")
    export.add_argument("--segments", action="store_true", help="the same as --unit segments (kept for scripts)")
    export.add_argument("--shard-rows", type=int, help="rows per shard (nemo, lhotse, hf): export.shard_rows")
    export.add_argument("--shard-mb", type=int,
                        help="MB of audio per shard when the shards carry it (webdataset, hf --embed-audio): "
                             "export.shard_mb")
    report = sub.add_parser("report", help="a self-contained HTML dataset card (plots, quarantine, runs, recipe)")
    _common(report, sources=False)
    report.add_argument("--out", metavar="FILE", help="where to write it (default: <warehouse>/report.html)")
    sql = sub.add_parser("sql", help="run SQL over the warehouse's tables")
    _common(sql, sources=False)
    sql.add_argument("--format", choices=["table", "json", "csv"], default="table")
    sql.add_argument("--limit", type=int, default=1000, help="rows shown by --format table (default 1000)")
    sql.add_argument("query", help='e.g. "SELECT * FROM bronze.audio_files LIMIT 5"')
    return parser


OUR_LOGGERS = ("voxlake", "jobs", "udfs", "annotators", "expectations")


def _setup_logging(verbose: bool, quiet: bool = False) -> None:
    """voxlake's own lines at INFO (DEBUG with -v, WARNING with -q); libraries (Great Expectations, py4j,
    numba...) at WARNING unless -v, so the console shows what the pipeline does, not how GX saves files."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    ours = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(ours)
    for noisy in ("py4j", "urllib3", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from jobs.spark.internals import quiet_query_context_loggers

    quiet_query_context_loggers(not verbose)


# flags that set a config key: (section, key) by argparse destination
FLAG_KEYS = {"max_files": ("run", "max_files"), "max_hours": ("run", "max_hours"),
             "shard_rows": ("export", "shard_rows"), "shard_mb": ("export", "shard_mb"),
             "accept": ("publish", "accept_run")}


def flag_overrides(args) -> dict:
    """The config keys the command line sets (they win over the config file and the defaults)."""
    overrides: dict = {"warehouse": args.warehouse} if args.warehouse else {}
    for dest, (section, key) in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    overrides = flag_overrides(args)
    try:
        config = load_config(
            args.config, overrides,
            sources=getattr(args, "source", None), manifests=getattr(args, "manifest", None),
        )
        from jobs.commandline import runner  # here: `--help` and usage errors need no Spark

        return runner.dispatch(args, config)
    except ConfigError as exc:
        print(f"voxlake: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # the run is recorded as failed in ops.runs before we get here
        log.debug("the %s job failed", args.command, exc_info=True)  # the trace: -v
        print(f"voxlake: {args.command} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:500]}",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
