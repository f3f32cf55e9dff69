"""What Spark is doing during a long step, for the person watching the console.

While a step runs, a daemon thread reads Spark's status tracker: the tasks of the active stages, done
and total, and the time spent. On a terminal it redraws one line on stderr every second; in a log
(cron, Airflow) it writes that line every `log_every_s` instead, so a log stays readable. Nothing is
shown when voxlake's logging is above INFO (`--quiet`).
"""
from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger(__name__)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


class StageProgress:
    def __init__(self, spark, label: str, log_every_s: float, stream=None):
        self.spark, self.label, self.log_every_s = spark, label, log_every_s
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._width = 0

    def line(self) -> str | None:
        """'<label>: tasks 3/8 done, 2 running, 0h01m02s' for the stages running now (None when idle)."""
        tracker = self.spark.sparkContext.statusTracker()
        done = total = running = 0
        for stage_id in tracker.getActiveStageIds():
            info = tracker.getStageInfo(stage_id)
            if info is not None:
                total += info.numTasks
                done += info.numCompletedTasks
                running += info.numActiveTasks
        if not total:
            return None
        return (f"{self.label}: tasks {done}/{total} done, {running} running, "
                f"{_duration(time.monotonic() - self._started)}")

    def __enter__(self):
        if log.isEnabledFor(logging.INFO):
            self._started = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="voxlake-progress", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        last_logged = time.monotonic()
        while not self._stop.wait(1.0 if self.tty else 5.0):
            try:
                text = self.line()
            except Exception:  # the session is stopping: progress is not worth an error
                return
            if not text:
                continue
            if self.tty:
                self._width = max(self._width, len(text))
                self.stream.write("\r" + text.ljust(self._width))
                self.stream.flush()
            elif time.monotonic() - last_logged >= self.log_every_s:
                log.info("%s", text)
                last_logged = time.monotonic()

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
