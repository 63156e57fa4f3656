"""Progress of a long loop: a Rich bar on a terminal, plain lines in a log file.

One small mechanism for every job that reads or writes many files outside a Lightning loop
(``verify.py``, BatchNorm recompute, median-frequency weights, synthetic data generation, and the
plain lines of ``predict.py`` when its output is not a terminal):

* nothing at all for the first ``delay`` seconds, so a short job prints nothing;
* then, on a terminal, a transient Rich bar (it disappears when the loop ends);
* off a terminal (a cluster job's log file, where a bar is a stream of carriage returns), one
  plain line every ``every`` seconds, ``verify train: 120/400 images (30%)  41.2/s  eta 0m07s``,
  and a last one when the loop ends.

It lives at the top of the package, beside ``errors.py``, because both the science rooms
(``data/``: weights, synthetic data) and the callbacks and tasks above them use it, and ``data/``
may not import ``callbacks/`` (tests/test_layering.py). It imports nothing from fcnlab.
Rich is a declared dependency (Lightning's ``RichProgressBar`` uses it as well).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.errors import LiveError
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

T = TypeVar("T")

DELAY_S = 2.0  # a loop shorter than this shows nothing
EVERY_S = 30.0  # one plain line per this many seconds off a terminal


def is_interactive() -> bool:
    """True when stdout is a terminal (a bar can redraw itself), False for a file or a pipe."""
    return sys.stdout.isatty()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Push-style progress: ``update(n)`` after each unit of work, ``close()`` at the end.

    ``bar``: None (the default) shows a Rich bar on a terminal; False never shows a bar, only the
    plain lines off a terminal (for a job whose terminal already has a bar, e.g. Lightning's in
    ``Trainer.predict``). ``enabled=False`` shows nothing (e.g. on every DDP rank but rank 0).
    """

    def __init__(self, description: str, total: int | None = None, *, unit: str = "items",
                 delay: float = DELAY_S, every: float = EVERY_S, bar: bool | None = None,
                 enabled: bool = True):
        self.description, self.total, self.unit = description, total, unit
        self.delay, self.every = delay, every
        self.enabled = enabled
        interactive = is_interactive()
        self.mode = "bar" if interactive and bar is not False else (
            None if interactive else "lines")
        self.done = 0
        self._start = time.monotonic()
        self._shown = False  # the bar started, or a line printed
        self._last_line = None
        self._rich = self._task = None
        self._lock = threading.Lock()  # verify.py counts from a thread pool

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            if not self.enabled or self.mode is None:
                return
            now = time.monotonic()
            if now - self._start < self.delay:
                return
            if self.mode == "bar":
                self._draw_bar()
            elif self._last_line is None or now - self._last_line >= self.every:
                self._line(now)

    def close(self) -> None:
        """Remove the bar; off a terminal, print the last line if any line was printed."""
        with self._lock:
            if self._rich is not None:
                self._rich.stop()
                self._rich = None
            elif self._shown and self.mode == "lines" and self.enabled:
                self._line(time.monotonic(), final=True)

    def __enter__(self) -> Progress:  # noqa: PYI034  (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _draw_bar(self) -> None:
        if self._rich is None:
            rich = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn(self.unit),
                                TimeRemainingColumn(), transient=True)
            try:
                rich.start()
            except LiveError:  # another Rich display is live (Lightning's RichProgressBar)
                self.mode = "lines"
                self._line(time.monotonic())
                return
            self._rich = rich
            self._task = rich.add_task(self.description, total=self.total)
            self._shown = True
        self._rich.update(self._task, completed=self.done)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            text = (f"{self.description}: {self.done}/{self.total} {self.unit} "
                    f"({100 * self.done / self.total:.0f}%)")
        else:
            text = f"{self.description}: {self.done} {self.unit}"
        if final:
            text += f"  done in {_duration(elapsed)}"
        else:
            text += f"  {rate:.1f}/s"
            if self.total and rate > 0:
                text += f"  eta {_duration((self.total - self.done) / rate)}"
        print(text, flush=True)
        self._last_line = now
        self._shown = True


def track(iterable: Iterable[T], description: str, *, total: int | None = None,
          unit: str = "items", delay: float = DELAY_S, every: float = EVERY_S,
          enabled: bool = True) -> Iterator[T]:
    """Yield the items of ``iterable``, showing :class:`Progress` as each one is done.

    ``total`` defaults to ``len(iterable)`` when it has one. A consumer that stops early
    (``break``) still removes the bar: the generator's ``finally`` runs when it is closed.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    progress = Progress(description, total, unit=unit, delay=delay, every=every,
                        enabled=enabled)
    try:
        for item in iterable:
            yield item
            progress.update()  # the consumer asked for the next item: this one is done
    finally:
        progress.close()
