"""An embedded PostgreSQL server, for running the service without a database configured,
and for the test suite.

It uses PostgreSQL server binaries already on the machine (`EMBEDDED_POSTGRES_BIN`, else
`pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`). The cluster lives in a
data directory of its own and listens only on a Unix socket inside it, so it never clashes
with another server's port and only its owner can connect. When TimescaleDB is installed
for those binaries, it is preloaded.

PostgreSQL refuses to run as root. Started by root, the server runs as an unprivileged user
(`EMBEDDED_OS_USER`, else `postgres`, else `nobody`), which then owns the data directory;
nothing else on the machine is changed.
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
PORT = 5432  # only names the socket file; the server does not listen on TCP


class EmbeddedError(RuntimeError):
    pass


def find_bin_dir(configured: Path | None = None) -> Path:
    candidates: list[Path] = []
    if configured is not None:
        candidates.append(configured)
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    candidates += [Path(p) for p in versions]
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise EmbeddedError(
        "no PostgreSQL server binaries found (looked for initdb and pg_ctl in "
        "EMBEDDED_POSTGRES_BIN, `pg_config --bindir` and /usr/lib/postgresql/*/bin). Install "
        "PostgreSQL (scripts/install-postgres.sh does) or set DATABASE_URL."
    )


def _os_user(configured: str | None) -> pwd.struct_passwd | None:
    """The user to run the server as: None means the current one."""
    if os.geteuid() != 0:
        return None
    names = [configured] if configured else ["postgres", "nobody"]
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise EmbeddedError(
        f"running as root, PostgreSQL needs an unprivileged user to run as; none of "
        f"{', '.join(names)} exists (set EMBEDDED_OS_USER)"
    )


class EmbeddedPostgres:
    def __init__(
        self,
        data_dir: Path,
        *,
        bin_dir: Path | None = None,
        os_user: str | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.bin_dir = find_bin_dir(bin_dir)
        self._user = _os_user(os_user)
        self._settings = settings or {}
        self._started_here = False

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "run"

    def url(self, database: str = SUPERUSER) -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={PORT}"

    @property
    def has_timescaledb(self) -> bool:
        lib_dir = self._pg_config("--pkglibdir")
        return lib_dir is not None and bool(glob.glob(f"{lib_dir}/timescaledb*.so"))

    def start(self) -> None:
        """Create the cluster if needed and start it, unless it is running already."""
        self._prepare_directories()
        if not (self.cluster_dir / "PG_VERSION").exists():
            log.info("creating an embedded PostgreSQL cluster in %s", self.cluster_dir)
            self._run(
                "initdb",
                "-D", str(self.cluster_dir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            )  # fmt: skip
        if self._run("pg_ctl", "-D", str(self.cluster_dir), "status", check=False) == 0:
            log.info("embedded PostgreSQL in %s is already running; using it", self.cluster_dir)
            return
        options = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "port": str(PORT),
            **(
                {"shared_preload_libraries": "timescaledb", "timescaledb.telemetry_level": "off"}
                if self.has_timescaledb
                else {}
            ),
            **self._settings,
        }
        self._run(
            "pg_ctl",
            "-D", str(self.cluster_dir),
            "-l", str(self.data_dir / "postgres.log"),
            "-w", "-t", "60",
            "-o", " ".join(f"-c {key}={value}" for key, value in options.items()),
            "start",
        )  # fmt: skip
        self._started_here = True

    def stop(self, *, even_if_not_started_here: bool = False) -> None:
        if self._started_here or (
            even_if_not_started_here and (self.cluster_dir / "postmaster.pid").exists()
        ):
            self._run("pg_ctl", "-D", str(self.cluster_dir), "-m", "fast", "-w", "stop")
            self._started_here = False

    def _prepare_directories(self) -> None:
        for directory in (self.data_dir, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if self._user is not None:
                os.chown(directory, self._user.pw_uid, self._user.pw_gid)
            directory.chmod(0o700)
        if self._user is not None and not _can_enter(self.data_dir, self._user):
            raise EmbeddedError(
                f"the embedded PostgreSQL runs as {self._user.pw_name}, who cannot reach "
                f"{self.data_dir} (a parent directory is private). Set EMBEDDED_DATA_DIR to a "
                "directory that user can reach."
            )

    def _pg_config(self, option: str) -> str | None:
        pg_config = self.bin_dir / "pg_config"
        if not pg_config.exists():
            return None
        result = subprocess.run([pg_config, option], capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    def _run(self, program: str, *args: str, check: bool = True) -> int:
        command = [str(self.bin_dir / program), *args]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.data_dir,
            user=self._user.pw_uid if self._user else None,
            group=self._user.pw_gid if self._user else None,
            extra_groups=[] if self._user else None,
        )
        if check and result.returncode != 0:
            raise EmbeddedError(
                f"{program} failed ({result.returncode}): {result.stderr.strip() or result.stdout}"
            )
        return result.returncode


def _can_enter(directory: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` can traverse every parent of `directory` (checked without switching)."""
    for parent in [directory, *directory.parents]:
        info = parent.stat()
        if info.st_uid == user.pw_uid:
            allowed = info.st_mode & 0o100
        elif info.st_gid == user.pw_gid:
            allowed = info.st_mode & 0o010
        else:
            allowed = info.st_mode & 0o001
        if not allowed:
            return False
    return True
