"""The `voxlake` command line: argument parsing and logging (cli.py), running a command (runner.py), the run
summary it prints (summary.py) and the exit codes schedulers branch on (exit_codes.py)."""
