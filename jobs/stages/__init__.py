"""The pipeline stages: ingest, annotate, link, publish. Each one follows the contract in stage.py (select its
work, process it on the executors, commit its tables and then every file's outcome through
jobs.warehouse.outcomes), run by one shared loop that commits in chunks and skips a stage whose inputs are
unchanged. The command line's runner owns the session, the ledger and the exit codes."""
