"""fcnlab.progress: plain lines off a terminal, a Rich bar on one, nothing for a short job."""

from __future__ import annotations

import re

import pytest

from fcnlab import progress as progress_mod
from fcnlab.progress import Progress, track


@pytest.fixture
def not_a_terminal(monkeypatch):
    monkeypatch.setattr(progress_mod, "is_interactive", lambda: False)


def test_plain_lines_when_not_a_terminal(not_a_terminal, capsys):
    items = list(track(range(5), "verify train", unit="images", delay=0, every=0))
    assert items == [0, 1, 2, 3, 4]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6  # one per item (every=0), then the last one
    assert re.fullmatch(r"verify train: 1/5 images \(20%\)  [\d.]+/s  eta \dm\d\ds", lines[0])
    assert lines[4].startswith("verify train: 5/5 images (100%)")
    assert re.fullmatch(r"verify train: 5/5 images \(100%\)  done in 0m0\ds", lines[-1])
    assert "\r" not in capsys.readouterr().out  # no carriage returns in a log file


def test_lines_are_periodic(not_a_terminal, capsys, monkeypatch):
    clock = iter(range(0, 1000, 10))  # every update 10 s later
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: next(clock))
    with Progress("weights", 9, unit="labels", delay=0, every=30) as p:
        for _ in range(9):
            p.update()
    lines = capsys.readouterr().out.splitlines()
    # Updates at t = 10, 20, ..., 90: lines at 10 (the first), 40, 70, then the final one.
    assert [line.split()[1] for line in lines] == ["1/9", "4/9", "7/9", "9/9"]


def test_a_short_job_prints_nothing(not_a_terminal, capsys):
    assert sum(track(range(100), "synthetic data")) == 4950  # default delay: 2 s
    assert capsys.readouterr().out == ""


def test_disabled_prints_nothing(not_a_terminal, capsys):
    list(track(range(3), "BatchNorm statistics", delay=0, every=0, enabled=False))
    assert capsys.readouterr().out == ""


def test_a_bar_on_a_terminal(monkeypatch):
    monkeypatch.setattr(progress_mod, "is_interactive", lambda: True)
    started = []

    class FakeRich:
        def __init__(self, *columns, transient):
            assert transient  # the bar goes away when the loop ends
            self.completed = None

        def start(self):
            started.append(self)

        def add_task(self, description, total):
            assert (description, total) == ("predict", 3)
            return 0

        def update(self, task, completed):
            self.completed = completed

        def stop(self):
            self.stopped = True

    monkeypatch.setattr(progress_mod, "RichProgress", FakeRich)
    with Progress("predict", 3, delay=0) as p:
        for _ in range(3):
            p.update()
    assert len(started) == 1 and started[0].completed == 3 and started[0].stopped
    # bar=False (Lightning already draws one): nothing on a terminal.
    started.clear()
    with Progress("predict", 3, delay=0, bar=False) as p:
        p.update(3)
    assert started == []


def test_an_early_break_closes_the_bar(not_a_terminal, capsys):
    for i in track(range(10), "BatchNorm statistics", unit="batches", delay=0, every=100):
        if i == 2:
            break
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("BatchNorm statistics: 2/10 batches (20%)  done in")
