from __future__ import annotations

from pathlib import Path

import pytest

from analytics_ingestion.bench import Figures, median_figures, parse_wrk, write_load_script

WRK_REPORT = """Running 10s test @ http://127.0.0.1:41000
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    82.01ms   45.10ms 427.67ms   75.00%
  Latency Distribution
     50%   79.11ms
     75%  101.00ms
     90%  130.00ms
     99%    1.25s
  1926 requests in 10.00s, 300.00KB read
  Non-2xx or 3xx responses: 3
Requests/sec:    192.63
Transfer/sec:     30.00KB
"""


def test_parse_wrk() -> None:
    assert parse_wrk(WRK_REPORT) == {
        "p50_ms": 79.11,
        "p99_ms": 1250.0,
        "requests_per_s": 192.63,
        "non_2xx": 3.0,
    }


def test_parse_wrk_without_latency_fails() -> None:
    with pytest.raises(RuntimeError, match="no 50% latency"):
        parse_wrk("Requests/sec: 1\n")


def figures(ratio: float, ceiling: float) -> Figures:
    return Figures(
        {1: ceiling / 2, 2: ceiling}, ceiling, ratio * ceiling, ratio, 1, 2, 3, 4, 5, 6, 7, 270
    )


def test_medians() -> None:
    median = median_figures([figures(0.8, 100), figures(0.9, 300), figures(0.7, 200)])
    assert median.ratio == 0.8
    assert median.ceiling == 200
    assert median.ceiling_rows_per_s == {1: 100, 2: 200}


@pytest.mark.parametrize(
    ("requests_per_s", "connections", "interval"),
    [
        pytest.param(120.0, 16, "interval = 16.666667", id="two-threads-share-the-rate"),
        pytest.param(50.0, 1, "interval = 20.000000", id="one-connection-one-thread"),
    ],
)
def test_a_fixed_rate_script_paces_each_thread(
    tmp_path: Path, requests_per_s: float, connections: int, interval: str
) -> None:
    script = write_load_script(tmp_path, [b"[]", b"[{}]"], requests_per_s, connections).read_text()
    assert interval in script
    assert "delay = function()" in script
    assert "[==[[{}]]==]" in script


def test_a_full_load_script_does_not_wait(tmp_path: Path) -> None:
    script = write_load_script(tmp_path, [b"[]"], None, 16).read_text()
    assert "delay" not in script
