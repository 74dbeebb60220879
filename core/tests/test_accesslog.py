"""turnout.accesslog: roll policies (Linkerd's ``*AccessLogRollPolicy`` syntax) and rolled
files kept by ``*AccessLogRotateCount``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from turnout.api import LineLog, RollPolicy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("never", RollPolicy("never")),
        ("Daily", RollPolicy("daily")),
        ("hourly", RollPolicy("hourly")),
        ("weekly(1)", RollPolicy("weekly", weekday=1)),
        ("100.megabytes", RollPolicy("size", size=100 << 20)),
        ("1.kilobyte", RollPolicy("size", size=1024)),
    ],
)
def test_parse(text, expected):
    assert RollPolicy.parse(text) == expected


@pytest.mark.parametrize("text", ["sometimes", "weekly(8)", "0.megabytes", "10", "10.parsecs"])
def test_parse_refuses(text):
    with pytest.raises(ValueError, match="invalid roll policy"):
        RollPolicy.parse(text)


def _local(*fields: int) -> float:
    return time.mktime((*fields, 0, 0, -1))


def test_next_roll_times():
    # Wednesday 2026-12-02 15:30:10 local time
    now = _local(2026, 12, 2, 15, 30, 10)
    assert RollPolicy("hourly").next_roll(now) == _local(2026, 12, 2, 16, 0, 0)
    assert RollPolicy("daily").next_roll(now) == _local(2026, 12, 3, 0, 0, 0)
    # weekly(1): the coming Sunday; weekly(4) is Wednesday: a week from today
    assert RollPolicy("weekly", weekday=1).next_roll(now) == _local(2026, 12, 6, 0, 0, 0)
    assert RollPolicy("weekly", weekday=4).next_roll(now) == _local(2026, 12, 9, 0, 0, 0)
    assert RollPolicy("never").next_roll(now) == float("inf")


def test_size_rolls_and_rotate_count_keeps_the_newest(tmp_path):
    path = tmp_path / "logs" / "access.log"
    log = LineLog(str(path), roll=RollPolicy.parse("1.kilobyte"), rotate_count=2)
    for i in range(10):
        log.write(f"{i:03d} " + "x" * 300)  # ~2 lines per file before 1 KiB
        log.write(f"{i:03d} " + "y" * 300)
        log.flush()
        time.sleep(0.01)
    log.close()
    rolled = log.rolled()
    assert len(rolled) == 2  # the older ones were removed
    assert os.path.getsize(path) <= 1024
    assert all(os.path.getsize(p) <= 1024 for p in rolled)
    # nothing lost between the two newest rolled files and the current one
    files = [Path(p) for p in [*rolled, str(path)]]
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert [line[:3] for line in lines] == sorted(line[:3] for line in lines)
    assert lines[-1].startswith("009 y")


def test_time_roll_at_the_first_flush_after_the_boundary(tmp_path):
    path = tmp_path / "access.log"
    log = LineLog(str(path), roll=RollPolicy.parse("daily"))
    log.write("before midnight")
    log.flush()
    log._next_roll = time.time() - 1  # (as if the day had turned)
    log.write("after midnight")
    log.flush()
    log.close()
    (old,) = log.rolled()
    assert Path(old).read_text() == "before midnight\n"
    assert path.read_text() == "after midnight\n"
    assert log._next_roll > time.time()


def test_never_does_not_roll(tmp_path):
    path = tmp_path / "access.log"
    log = LineLog(str(path), roll=RollPolicy.parse("never"))
    log.write("a")
    log.flush()
    log.close()
    assert log.rolled() == []
