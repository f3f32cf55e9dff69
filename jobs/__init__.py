"""voxlake's Spark jobs.

`jobs/<job>.py` (run, ingest, annotate, link, publish, maintain, cli) are the spark-submit entry points, thin
shims over the command line in `jobs/commandline/`. Below it, in the order imports flow:
`jobs/stages/` (the pipeline: ingest, annotate, link, publish) and `jobs/commands/` (maintain, export, report,
sql); `jobs/warehouse/` (tables, ledger, outcomes, lease, state); `jobs/io/` (sources, storage);
`jobs/spark/` (session, JVM start-up, progress); `jobs/config/` (the typed settings and their defaults).
docs/architecture.md draws the data flow and the tables.
"""
