"""The pipeline stages. Each one selects its work, processes it on the executors, and commits its tables
and every file's outcome (through jobs.outcomes). The runner owns the session, the ledger and exit codes."""
