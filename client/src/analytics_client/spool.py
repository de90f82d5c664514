"""An optional on-disk spool: batches not delivered in time, kept across restarts.

Each batch is one file holding its `Idempotency-Key`, its event ids and its events (one JSON
document per line: the client's JSON never holds a raw newline), so it is sent again as the
same request. Files are named by their key, a UUIDv7 (its time first), so sorted by name they
come oldest first. A file is written to a temporary name, flushed to disk and renamed into place,
then the directory is flushed too: after a crash a batch is there whole or not at all.

Several processes may share a directory (the workers of one server). A batch is taken by
renaming its file to a name holding the taker's process id and a token drawn once per process;
a rename succeeds for one taker only, so two processes never send the same file at once. A
taken file whose process has died is given back at the next scan, and so is one that holds this
process's id with another token: a restarted container's process often gets the id of the one
before it (even 1), which must not keep that one's batches for ever.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from analytics_client.batching import ClosedBatch, seal

SUFFIX = ".batch"
_CLAIMED = re.compile(r"(?P<name>.+\.batch)\.claimed-(?P<pid>[0-9]+)-(?P<token>[0-9a-f]+)")
_TOKENS: dict[int, str] = {}  # by process id: a forked child draws its own
_KEY = re.compile(r"[A-Za-z0-9._-]{1,200}")


class SpoolError(OSError):
    """The spool cannot take a batch: full, or not writable."""


@dataclass(frozen=True)
class SpooledBatch:
    batch: ClosedBatch
    path: Path  # the claimed file


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def store(self, batch: ClosedBatch) -> None:
        """Write a batch durably. Raises `SpoolError` when full or not writable."""
        if not _KEY.fullmatch(batch.key):
            raise SpoolError(f"the key {batch.key!r} cannot name a file")
        header = {
            "key": batch.key,
            "event_ids": list(batch.event_ids),
            "compressed": batch.compressed,
        }
        content = b"\n".join([json.dumps(header).encode(), *batch.payloads]) + b"\n"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self.used_bytes() + len(content) > self.max_bytes:
                raise SpoolError(f"the spool holds its limit of {self.max_bytes} bytes")
            final = self.directory / f"{batch.key}{SUFFIX}"
            temporary = self.directory / f".{batch.key}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
            with open(temporary, "wb") as file:
                file.write(content)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, final)
            self._sync_directory()
        except SpoolError:
            raise
        except OSError as error:
            raise SpoolError(f"cannot write to the spool: {error}") from error

    def claim_next(self) -> SpooledBatch | None:
        """The oldest batch no other process holds, now held by this one; None when none is."""
        for path in self._available():
            claimed = path.with_name(f"{path.name}.claimed-{os.getpid()}-{_token()}")
            try:
                os.rename(path, claimed)
            except FileNotFoundError:
                continue  # another process took it first
            except OSError:
                return None
            try:
                return SpooledBatch(_read(claimed), claimed)
            except (OSError, ValueError, KeyError, TypeError):
                # Unreadable: set aside for a person to look at, never sent and never lost.
                with contextlib.suppress(OSError):
                    os.rename(claimed, claimed.with_name(f"{path.name}.unreadable"))
        return None

    def remove(self, spooled: SpooledBatch) -> None:
        """The batch is settled: delivered, or refused for good."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spooled.path)
        self._sync_directory()

    def give_back(self, spooled: SpooledBatch) -> None:
        """Not settled: let this or another process send it later."""
        with contextlib.suppress(OSError):
            os.rename(spooled.path, spooled.path.with_name(_available_name(spooled.path)))

    def used_bytes(self) -> int:
        total = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                with contextlib.suppress(OSError):
                    total += entry.stat().st_size
        return total

    def _available(self) -> list[Path]:
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        available = []
        for name in names:
            claimed = _CLAIMED.fullmatch(name)
            if claimed is not None and not _held(int(claimed["pid"]), claimed["token"]):
                with contextlib.suppress(OSError):
                    os.rename(self.directory / name, self.directory / claimed["name"])
                    available.append(self.directory / claimed["name"])
            elif name.endswith(SUFFIX) and not name.startswith("."):
                available.append(self.directory / name)
        return sorted(available)

    def _sync_directory(self) -> None:
        with contextlib.suppress(OSError):
            descriptor = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


def _available_name(claimed: Path) -> str:
    match = _CLAIMED.fullmatch(claimed.name)
    return match["name"] if match else claimed.name


def _token() -> str:
    pid = os.getpid()
    token = _TOKENS.get(pid)
    if token is None:
        token = _TOKENS[pid] = secrets.token_hex(8)
    return token


def _held(pid: int, token: str) -> bool:
    """Whether the process that took a file may still be sending it."""
    if pid == os.getpid():
        return token == _token()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _read(path: Path) -> ClosedBatch:
    header_line, *lines = path.read_bytes().split(b"\n")
    header = json.loads(header_line)
    payloads = tuple(line for line in lines if line)
    event_ids = tuple(str(event_id) for event_id in header["event_ids"])
    if len(payloads) != len(event_ids) or not payloads:
        raise ValueError("the events do not match their ids")
    return seal(
        str(header["key"]),
        event_ids,
        payloads,
        compress=bool(header["compressed"]),
    )
