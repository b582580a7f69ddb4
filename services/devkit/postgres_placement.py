"""Who runs the private PostgreSQL server, and where its data dir can live.

initdb, pg_ctl and postgres refuse to run as root. As root the server runs as
the ``postgres`` user (or a system user ``duetpg`` created for it), and that
account must reach its data dir: every folder above it must be traversable by
it. Root's home (mode 0700) and any ``mktemp -d`` folder are not, so a checkout
in one gets its data dir in a per-checkout folder under /var/tmp instead:

    /var/tmp/duet-postgres/            root, 0711
        <hash>/                        root, 0711; hash of the state dir's real path
            state-dir                  the state dir it belongs to (checked on reuse)
            pg/                        the server account, 0700: the data dir
    <state dir>/pg-relocated           symlink to <hash>/, for people and `make clean`

The folder is a function of the state dir's path, so the next run finds the
same data and two checkouts never share one. Once a checkout's data is there
it stays there, even if the checkout's folders later become traversable.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from duet.services.devkit.errors import SetupError

logger = logging.getLogger("duet.db")

#: System user created to run the server when we are root and no `postgres` user exists.
FALLBACK_SERVICE_USER = "duetpg"
#: Where data dirs go when the server account cannot reach the state dir.
RELOCATION_ROOT = Path("/var/tmp/duet-postgres")
#: In the state dir: a symlink to the relocated folder (never read back; the hash finds it).
POINTER_NAME = "pg-relocated"
_RECORD_NAME = "state-dir"


@dataclass(frozen=True)
class ServerAccount:
    """The unprivileged account the server runs under when we are root."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    @classmethod
    def of(cls, pw: pwd.struct_passwd) -> ServerAccount:
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, tuple(os.getgrouplist(pw.pw_name, pw.pw_gid)))

    def subprocess_kwargs(self) -> dict[str, Any]:
        """For subprocess.run: run the child as this account."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def can_traverse(self, folder: Path) -> bool:
        """Whether this account can `cd` into ``folder`` (so reach anything in it)."""
        probe = subprocess.run(
            ["/bin/sh", "-c", 'cd "$1"', "sh", str(folder)],
            cwd="/",
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            **self.subprocess_kwargs(),
        )
        return probe.returncode == 0

    def blocker(self, folder: Path) -> str:
        """The first folder on the way to ``folder`` that this account cannot pass, described."""
        for p in [*reversed(folder.parents), folder]:
            try:
                st = p.stat()
            except OSError:
                return f"{p} (cannot be read)"
            if not (
                st.st_mode & stat.S_IXOTH
                or (st.st_uid == self.uid and st.st_mode & stat.S_IXUSR)
                or (st.st_gid in self.groups and st.st_mode & stat.S_IXGRP)
            ):
                return f"{p} (mode {stat.filemode(st.st_mode)}, owner {_user_name(st.st_uid)})"
        return f"{folder} (for a reason its mode bits do not show, e.g. an ACL or a mount option)"


@dataclass(frozen=True)
class Placement:
    """Where a state dir's data dir is: where it was asked for, or relocated."""

    requested: Path  # <state dir>/pg
    data_dir: Path  # where the data is
    reason: str = ""  # why it is not at `requested`; empty when it is

    @property
    def relocated(self) -> bool:
        return self.data_dir != self.requested


def holds_cluster(data_dir: Path) -> bool:
    return (data_dir / "PG_VERSION").is_file()


def relocation_folder(requested: Path, root: Path) -> Path:
    """The per-checkout folder for the data dir ``requested`` (keyed by its real path)."""
    key = hashlib.sha256(str(_real(requested.parent)).encode()).hexdigest()[:16]
    return root / key


def find_existing(requested: Path, root: Path) -> Path | None:
    """The data dir of an existing cluster for ``requested``: in place, or where an earlier run moved it."""
    if holds_cluster(requested):
        return requested
    if os.geteuid() != 0:
        return None  # only root relocates
    relocated = relocation_folder(requested, root) / requested.name
    if holds_cluster(relocated) and _recorded_state_dir(relocated.parent) in (None, str(_real(requested.parent))):
        return relocated
    return None


def pick_account(existing: Path | None) -> ServerAccount:
    """As root: the account that runs initdb, pg_ctl and postgres."""
    # An existing cluster keeps its owner (the server only opens a data dir it owns).
    if existing is not None:
        with contextlib.suppress(KeyError, FileNotFoundError):
            uid = existing.stat().st_uid
            if uid != 0:
                return ServerAccount.of(pwd.getpwuid(uid))
    for name in ("postgres", FALLBACK_SERVICE_USER):
        with contextlib.suppress(KeyError):
            return ServerAccount.of(pwd.getpwnam(name))
    useradd = shutil.which("useradd")
    if useradd is None:
        raise SetupError(
            "running as root, and PostgreSQL refuses to run as root; no 'postgres' user exists and "
            f"useradd is missing to create '{FALLBACK_SERVICE_USER}': create an unprivileged user named "
            f"'postgres' or '{FALLBACK_SERVICE_USER}', or run as a normal user"
        )
    nologin = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if os.path.exists(s)), "/bin/false")
    proc = subprocess.run(
        [useradd, "--system", "--no-create-home", "--user-group", "--shell", nologin, FALLBACK_SERVICE_USER],
        capture_output=True,
        text=True,
    )
    try:
        # Re-read even on failure: a concurrent process may have created it first.
        account = ServerAccount.of(pwd.getpwnam(FALLBACK_SERVICE_USER))
    except KeyError:
        raise SetupError(
            f"could not create system user {FALLBACK_SERVICE_USER} to run PostgreSQL (it refuses to run as root): "
            f"{proc.stderr.strip()}; create an unprivileged user named 'postgres', or run as a normal user"
        ) from None
    logger.info("created system user %s to run PostgreSQL (it refuses to run as root)", FALLBACK_SERVICE_USER)
    return account


def place(requested: Path, account: ServerAccount | None, root: Path) -> Placement:
    """Decide where the data dir for ``requested`` is; creates nothing.

    Raises SetupError for a folder at ``requested`` that is not a cluster, or an
    existing cluster there that the server account cannot reach.
    """
    if requested.exists() and not _empty_or_cluster(requested):
        raise SetupError(
            f"{requested} is neither empty nor a PostgreSQL data dir; pick another state dir (--state-dir) or empty it"
        )
    if account is None:
        return Placement(requested, requested)
    existing = find_existing(requested, root)
    reachable = account.can_traverse(requested.parent)
    if existing == requested:
        if not reachable:
            raise SetupError(
                f"PostgreSQL runs as user '{account.name}' here (it refuses to run as root), but that user cannot "
                f"reach the existing cluster in {requested}: {account.blocker(requested.parent)} is not traversable "
                f"by it. Run `chmod o+x` on that folder, or move {requested} away to start a new cluster elsewhere"
            )
        return Placement(requested, requested)
    if existing is None and reachable:
        return Placement(requested, requested)
    if reachable:  # the data is where an earlier run moved it: it stays there
        why = "an earlier run put it there"
    else:
        why = (
            f"PostgreSQL runs as user '{account.name}' (it refuses root), which cannot traverse "
            f"{account.blocker(requested.parent)}"
        )
    relocated = relocation_folder(requested, root) / requested.name
    return Placement(requested, relocated, why)


def prepare_relocation(placement: Placement, account: ServerAccount) -> None:
    """Create the relocated folder's parents (safely: /var/tmp is world-writable) and the pointer to it."""
    folder = placement.data_dir.parent
    state_dir = _real(placement.requested.parent)
    try:
        _safe_folder(folder.parent)
        _safe_folder(folder)
    except OSError as exc:
        raise SetupError(f"cannot create {folder} for the PostgreSQL data: {exc.strerror or exc}") from exc
    if not account.can_traverse(folder):
        raise SetupError(
            f"PostgreSQL runs as user '{account.name}' here (it refuses to run as root), and that user can reach "
            f"neither {placement.requested} nor {folder}: {account.blocker(folder)} is not traversable by it. "
            f"Run `chmod o+x` on that folder, or use a state dir (--state-dir) under a folder every user can traverse"
        )
    recorded = _recorded_state_dir(folder)
    if recorded is None:
        (folder / _RECORD_NAME).write_text(f"{state_dir}\n")
    elif recorded != str(state_dir):
        raise SetupError(
            f"{folder} holds the PostgreSQL data of {recorded}, not {state_dir} (the two paths hash alike); "
            f"remove {folder} if {recorded} is gone, or use another state dir (--state-dir)"
        )
    # A leftover empty folder where the data would have been says nothing useful.
    with contextlib.suppress(OSError):
        placement.requested.rmdir()
    _point(placement.requested.parent / POINTER_NAME, folder)


def drop_pointer(state_dir: Path) -> None:
    """The data is in place: a pointer left from an earlier layout would mislead."""
    pointer = state_dir / POINTER_NAME
    if pointer.is_symlink():
        pointer.unlink(missing_ok=True)


def _point(pointer: Path, target: Path) -> None:
    if pointer.is_symlink() and os.readlink(pointer) == str(target):
        return
    if pointer.exists() and not pointer.is_symlink():
        logger.warning("%s exists and is not a symlink; leaving it alone", pointer)
        return
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, pointer)  # atomic: a concurrent run sees the old link or the new one


def _safe_folder(path: Path) -> None:
    """A folder only root can write, 0711: in /var/tmp anyone could have made it first."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o711)
    st = os.lstat(path)
    problem = ""
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        problem = "not a folder (a symlink or a file)"
    elif st.st_uid != os.geteuid():
        problem = f"owned by {_user_name(st.st_uid)}"
    elif st.st_mode & 0o022:
        problem = f"writable by others (mode {stat.filemode(st.st_mode)})"
    if problem:
        raise SetupError(
            f"refusing to keep PostgreSQL data in {path}: it is {problem}, and in a folder anyone can write to only "
            f"a folder of root's own that no one else can write is safe. Remove {path} and retry"
        )
    os.chmod(path, 0o711)  # mkdir's mode is narrowed by the umask


def _empty_or_cluster(folder: Path) -> bool:
    return folder.is_dir() and (holds_cluster(folder) or not any(folder.iterdir()))


def _recorded_state_dir(folder: Path) -> str | None:
    try:
        return (folder / _RECORD_NAME).read_text().strip() or None
    except OSError:
        return None


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


__all__ = [
    "FALLBACK_SERVICE_USER",
    "POINTER_NAME",
    "RELOCATION_ROOT",
    "Placement",
    "ServerAccount",
    "drop_pointer",
    "find_existing",
    "holds_cluster",
    "pick_account",
    "place",
    "prepare_relocation",
    "relocation_folder",
]
