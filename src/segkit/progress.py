"""Progress of a long job, for people: one updating line on a terminal, a line now and then in
a log, nothing when asked to be quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Seconds between lines when the output is not a terminal (a log file, CI).
LOG_INTERVAL = 10.0
#: Items that must finish after the first before a time left is shown: the first one carries
#: the start-up (loading, compiling the graph) and alone overstates the time left many times.
ESTIMATE_AFTER = 3


def note(text: str, *, enabled: bool = True, stream: TextIO | None = None) -> None:
    """Tell people one thing at the start of a job (what it will cost, say), on the stream
    progress goes to; nothing when asked to be quiet."""
    if enabled:
        stream = stream if stream is not None else sys.stderr
        stream.write(text + "\n")
        stream.flush()


class Progress:
    """Counts finished items and shows the count, the rate and the time left.

    Args:
        total: items in the whole job.
        what: what is counted, e.g. ``"images"``.
        label: what the job is, e.g. ``"predict"``.
        stream: where to write (standard error by default, so output files and pipes of
            results stay clean).
        enabled: False writes nothing.
    """

    def __init__(
        self,
        total: int,
        what: str,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
    ):
        self.total, self.what, self.label = total, what, label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.done = 0
        self.start = self.last_line = time.perf_counter()
        # When the first items finished, and how many: the rate is measured from there.
        self.first_time: float | None = None
        self.first_done = 0
        self.terminal = self.enabled and getattr(self.stream, "isatty", lambda: False)()

    def update(self, count: int = 1) -> None:
        """Record ``count`` more finished items."""
        self.done += count
        now = time.perf_counter()
        if self.first_time is None:
            self.first_time, self.first_done = now, self.done
        if not self.enabled:
            return
        finished = self.done >= self.total
        if self.terminal:
            self.stream.write("\r" + self.line(now) + ("\n" if finished else ""))
            self.stream.flush()
        elif finished or now - self.last_line >= LOG_INTERVAL:
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()
            self.last_line = now

    def line(self, now: float | None = None) -> str:
        """``"predict: 40/160 images, 2.3 images/s, 52 s left"``; the rate and time left only
        once `ESTIMATE_AFTER` items finished after the first, and measured from the first's end
        (``"predict: 1/160 images"`` before); the last line gives the mean rate and the time
        taken."""
        now = now or time.perf_counter()
        text = f"{self.label}: {self.done}/{self.total} {self.what}"
        if self.done >= self.total:
            elapsed = max(now - self.start, 1e-9)
            return text + f", {self.done / elapsed:.1f} {self.what}/s, {elapsed:.0f} s"
        counted = self.done - self.first_done
        if self.first_time is not None and counted >= ESTIMATE_AFTER and now > self.first_time:
            rate = counted / (now - self.first_time)
            left = (self.total - self.done) / rate
            text += f", {rate:.1f} {self.what}/s, {left:.0f} s left"
        return text
