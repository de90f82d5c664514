"""The on-disk spool: durable files, claimed by one process at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from analytics_client.batching import ClosedBatch, seal
from analytics_client.identifiers import new_batch_key
from analytics_client.spool import Spool, SpoolError


def batch(key: str, count: int = 2, compress: bool = True) -> ClosedBatch:
    ids = tuple(f"{key}-event-{n}" for n in range(count))
    payloads = tuple(f'{{"n":{n},"text":"line\\nbreak é"}}'.encode() for n in range(count))
    return seal(key, ids, payloads, compress=compress)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    "compress", [pytest.param(True, id="gzip"), pytest.param(False, id="plain")]
)
def test_a_stored_batch_comes_back_as_the_same_request(tmp_path: Path, compress: bool) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000)
    original = batch("k1", compress=compress)
    spool.store(original)
    spooled = spool.claim_next()
    assert spooled is not None
    again = spooled.batch
    assert (again.key, again.event_ids, again.payloads) == (
        original.key,
        original.event_ids,
        original.payloads,
    )
    assert again.body == original.body
    [claimed] = [p.name for p in tmp_path.iterdir()]
    assert claimed.startswith(f"k1.batch.claimed-{os.getpid()}-")


def test_batches_come_back_oldest_first_and_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000)
    keys = [new_batch_key() for _ in range(5)]  # as the client names its batches
    for index in (3, 0, 4, 1, 2):
        spool.store(batch(keys[index]))
    claimed = [spool.claim_next() for _ in range(6)]
    assert [c.batch.key if c else None for c in claimed] == [*keys, None]


def test_another_spool_on_the_directory_does_not_take_a_claimed_batch(tmp_path: Path) -> None:
    Spool(tmp_path, 1_000_000).store(batch("k1"))
    assert Spool(tmp_path, 1_000_000).claim_next() is not None
    assert Spool(tmp_path, 1_000_000).claim_next() is None  # held by a live process


def test_a_batch_claimed_by_a_dead_process_is_given_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1_000_000)
    spool.store(batch("k1"))
    (tmp_path / "k1.batch").rename(tmp_path / f"k1.batch.claimed-{dead_pid()}-0a1b")
    spooled = spool.claim_next()
    assert spooled is not None and spooled.batch.key == "k1"


def test_a_batch_claimed_by_an_earlier_process_with_this_id_is_given_back(tmp_path: Path) -> None:
    # A restarted container's process often has its predecessor's id (even 1).
    spool = Spool(tmp_path, 1_000_000)
    spool.store(batch("k1"))
    (tmp_path / "k1.batch").rename(tmp_path / f"k1.batch.claimed-{os.getpid()}-0a1b")
    spooled = spool.claim_next()
    assert spooled is not None and spooled.batch.key == "k1"
    assert spool.claim_next() is None  # now held by this process: not taken twice


def test_remove_and_give_back(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1_000_000)
    spool.store(batch("k1"))
    spool.store(batch("k2"))
    first, second = spool.claim_next(), spool.claim_next()
    assert first is not None and second is not None
    spool.remove(first)
    spool.give_back(second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k2.batch"]
    again = spool.claim_next()
    assert again is not None and again.batch.key == "k2"


def test_a_full_spool_refuses(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=300)
    spool.store(batch("k1"))
    with pytest.raises(SpoolError, match="limit of 300 bytes"):
        spool.store(batch("k2", count=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k1.batch"]


def test_an_unwritable_spool_says_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SpoolError, match="cannot write to the spool"):
        Spool(tmp_path / "file" / "spool", 1_000_000).store(batch("k1"))


def test_a_key_that_cannot_name_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="cannot name a file"):
        Spool(tmp_path, 1_000_000).store(batch("../escape"))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"garbage", id="not-json"),
        pytest.param(
            b'{"key":"k","event_ids":["a","b"],"compressed":false}\n{}\n', id="ids-mismatch"
        ),
        pytest.param(b"", id="empty"),
    ],
)
def test_an_unreadable_file_is_set_aside_not_sent(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.batch").write_bytes(content)
    spool = Spool(tmp_path, 1_000_000)
    spool.store(batch("good"))
    spooled = spool.claim_next()
    assert spooled is not None and spooled.batch.key == "good"
    assert spool.claim_next() is None
    assert "bad.batch.unreadable" in {p.name for p in tmp_path.iterdir()}


def test_no_temporary_file_stays_behind(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1_000_000)
    spool.store(batch("k1"))
    assert [p.name for p in tmp_path.iterdir()] == ["k1.batch"]
