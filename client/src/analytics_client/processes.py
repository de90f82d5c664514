"""Noticing a forked child where no at-fork hook ran (a C extension's `fork` runs none): each
object that holds per-process state remembers the process it was made in."""

from __future__ import annotations

import os


class ProcessCheck:
    def __init__(self) -> None:
        self.pid = os.getpid()

    def forked(self) -> bool:
        """True at the first call in a forked child, which is then this check's process."""
        pid = os.getpid()
        if pid == self.pid:
            return False
        self.pid = pid
        return True
