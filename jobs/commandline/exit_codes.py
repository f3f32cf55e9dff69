"""The process exit codes of every voxlake command (a contract: schedulers branch on them)."""

EXIT_OK = 0  # done, including "nothing new"
EXIT_BLOCKED = 1  # the quality gate blocked publishing; gold is unchanged
EXIT_USAGE = 2  # bad usage or configuration
EXIT_FAILED = 3  # the job failed for a reason that is not one file's
EXIT_BUSY = 4  # another voxlake run holds the warehouse (run.lease_wait_s ran out); nothing was done
