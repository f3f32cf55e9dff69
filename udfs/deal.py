"""Deal files to tasks so that each task gets about the same audio seconds.

Dealing by a hash of the file id leaves the tasks' loads to chance: the 46 English corpus files hash 29
to one task and 17 to the other, and in an asr-only run (beside another benchmark) the first task
ended 22 s before the second (of 78 s). Sorting every file globally would balance them but moves all rows through one ordering.
Instead each input partition, sorted longest first within itself, packs its files one by one onto the
least-loaded task (the LPT rule): every partition's share is balanced to within its longest file, so
the sums are too. Rows stream through batch by batch; nothing holds a whole partition.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

TASK_COLUMN = "_task"
UNKNOWN_DURATION_S = 1.0  # a file whose header gave no duration still costs something


def make_dealer(task_keys: list[int], duration_column: str = "duration_s") -> Callable:
    """A mapInPandas function adding TASK_COLUMN: `task_keys[i]` for the files packed onto task i.

    Its input must be sorted by duration, longest first, within the partition. The keys are values
    that Spark's hash partitioning sends to partition i, so a repartition by TASK_COLUMN puts each
    task's files in a partition of their own. Partitions start their packing at different tasks, so
    that their longest files do not all land on the same one.
    """
    n = len(task_keys)

    def deal(batches: Iterator) -> Iterator:
        from pyspark import TaskContext

        context = TaskContext.get()
        offset = (context.partitionId() if context else 0) % n
        loads = [(0.0, (task - offset) % n, task) for task in range(n)]
        heapq.heapify(loads)
        for batch in batches:
            durations = batch[duration_column].fillna(UNKNOWN_DURATION_S).clip(lower=0.0)
            assigned = []
            for duration in durations:
                load, rank, task = heapq.heappop(loads)
                assigned.append(task_keys[task])
                heapq.heappush(loads, (load + float(duration), rank, task))
            yield batch.assign(**{TASK_COLUMN: assigned})

    return deal
