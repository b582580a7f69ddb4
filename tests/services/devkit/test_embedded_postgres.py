"""The private PostgreSQL cluster: binaries lookup, start/stop, reuse, stale pid files, root handling
(the run-as account and the relocated data dir), and the `duet` command's message for what goes wrong.

Each test that needs its own cluster starts one in a scratch dir (about 1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from duet.services.cli.main import main as duet_main
from duet.services.devkit import embedded_postgres as embedded
from duet.services.devkit import postgres_binaries, postgres_placement
from duet.services.devkit.embedded_postgres import (
    EmbeddedPostgres,
    PostgresNotFound,
    SetupError,
    database_url,
    find_binaries,
    open_database,
)


@pytest.fixture
def scratch() -> Iterator[Path]:
    base = embedded.make_scratch_dir("duet-test-embedded-")
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg(scratch: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(scratch / "pg")
    yield server
    server.stop()


async def _fetchval(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def fetchval(dsn: str, sql: str) -> object:
    return asyncio.run(_fetchval(dsn, sql))


def execute(dsn: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for s in statements:
                await conn.execute(s)
        finally:
            await conn.close()

    asyncio.run(run())


def _hide_binaries(monkeypatch: pytest.MonkeyPatch, path_dir: Path) -> None:
    monkeypatch.setenv("PATH", str(path_dir))
    monkeypatch.setattr(postgres_binaries, "BINARY_GLOBS", (str(path_dir / "nowhere" / "*" / "bin"),))


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only as root does the server run as another user")


# -- binaries -----------------------------------------------------------------


def test_missing_binaries_message_names_them_and_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide_binaries(monkeypatch, tmp_path)
    with pytest.raises(PostgresNotFound) as info:
        find_binaries()
    msg = str(info.value)
    for name in ("initdb", "pg_ctl", "postgres"):
        assert name in msg
    assert "apt-get install postgresql" in msg
    assert "DUET_DATABASE_URL" in msg
    assert isinstance(info.value, SetupError) and isinstance(info.value, RuntimeError)


def test_missing_binaries_raised_by_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_binaries(monkeypatch, tmp_path)
    with pytest.raises(PostgresNotFound):
        EmbeddedPostgres(tmp_path / "pg").start()
    assert not (tmp_path / "pg").exists()


def test_partially_installed_binaries_name_only_the_missing_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "initdb"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    _hide_binaries(monkeypatch, tmp_path)
    with pytest.raises(PostgresNotFound) as info:
        find_binaries()
    missing = str(info.value).split("(searched")[0]
    assert "pg_ctl" in missing and "postgres" in missing
    assert "initdb" not in missing


def test_binaries_found_on_this_machine() -> None:
    b = find_binaries()
    assert b.major >= 12
    for name in ("initdb", "pg_ctl", "postgres"):
        assert os.access(b.path(name), os.X_OK)


# -- lifecycle ----------------------------------------------------------------


def test_start_gives_a_loopback_dsn_for_database_duet(pg: EmbeddedPostgres) -> None:
    dsn = pg.start()
    assert dsn == pg.dsn
    assert dsn.startswith("postgresql://duet@127.0.0.1:") and dsn.endswith("/duet")
    assert fetchval(dsn, "SELECT current_database()") == "duet"
    # Loopback TCP only, no unix socket.
    assert fetchval(dsn, "SHOW listen_addresses") == "127.0.0.1"
    assert fetchval(dsn, "SHOW unix_socket_directories") == ""
    assert pg.start() == dsn  # idempotent


def test_stop_is_idempotent_and_start_again_reuses_the_data(pg: EmbeddedPostgres) -> None:
    dsn = pg.start()
    execute(dsn, "CREATE TABLE kept (v text)", "INSERT INTO kept VALUES ('still here')")
    pg.stop()
    pg.stop()
    assert not (pg.data_dir / "postmaster.pid").exists()
    with pytest.raises(RuntimeError):
        _ = pg.dsn
    again = EmbeddedPostgres(pg.data_dir)
    try:
        dsn2 = again.start()
        assert fetchval(dsn2, "SELECT v FROM kept") == "still here"
    finally:
        again.stop()


def test_fixed_port_is_used(scratch: Path) -> None:
    port = embedded.free_port()
    with EmbeddedPostgres(scratch / "pg", port=port) as server:
        assert server.dsn == f"postgresql://duet@127.0.0.1:{port}/duet"
        assert fetchval(server.dsn, "SELECT 1") == 1


def test_restart_after_the_server_was_killed(pg: EmbeddedPostgres) -> None:
    dsn = pg.start()
    execute(dsn, "CREATE TABLE kept (v int)", "INSERT INTO kept VALUES (7)")
    pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)  # leaves a stale postmaster.pid behind
    assert (pg.data_dir / "postmaster.pid").exists()
    again = EmbeddedPostgres(pg.data_dir)
    try:
        dsn2 = again.start()
        assert fetchval(dsn2, "SELECT v FROM kept") == 7
    finally:
        again.stop()


def test_stale_pid_file_naming_an_unrelated_live_process(pg: EmbeddedPostgres) -> None:
    pg.start()
    pg.stop()
    # As after a container restart: the recorded PID now belongs to someone else.
    lines = [str(os.getpid()), str(pg.data_dir), "0", "5432", "", "127.0.0.1", "0", "ready"]
    (pg.data_dir / "postmaster.pid").write_text("\n".join(lines) + "\n")
    dsn = pg.start()
    assert fetchval(dsn, "SELECT 1") == 1


def test_second_object_on_a_running_cluster_shares_it_and_leaves_it_running(pg: EmbeddedPostgres) -> None:
    dsn = pg.start()
    other = EmbeddedPostgres(pg.data_dir)
    assert other.start() == dsn
    other.stop()
    assert fetchval(dsn, "SELECT 1") == 1  # still up: the first owner stops it
    pg.stop()
    assert not (pg.data_dir / "postmaster.pid").exists()


def test_a_server_left_by_a_dead_starter_is_adopted_and_stopped(pg: EmbeddedPostgres, scratch: Path) -> None:
    pg.start()
    # As if the process that started it had been killed: its PID no longer runs.
    gone = subprocess.Popen(["true"])
    gone.wait()
    (scratch / ".pg.owner").write_text(f"{gone.pid}\n")
    heir = EmbeddedPostgres(pg.data_dir)
    dsn = heir.start()
    assert fetchval(dsn, "SELECT 1") == 1
    heir.stop()
    assert not (pg.data_dir / "postmaster.pid").exists()
    pg.stop()  # nothing left to stop: quiet


def test_refuses_a_non_empty_directory_that_is_not_a_cluster(scratch: Path) -> None:
    d = scratch / "pg"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(SetupError, match="neither empty nor a PostgreSQL data dir"):
        EmbeddedPostgres(d).start()
    assert (d / "notes.txt").read_text() == "mine"


def test_a_data_dir_of_another_major_version_is_refused_clearly(scratch: Path) -> None:
    d = scratch / "pg"
    d.mkdir(mode=0o700)
    (d / "PG_VERSION").write_text("9\n")
    with pytest.raises(SetupError) as info:
        EmbeddedPostgres(d).start()
    msg = str(info.value)
    assert "PostgreSQL 9 cluster" in msg and str(d) in msg and "install PostgreSQL 9" in msg


def test_a_fixed_port_that_is_taken_is_reported_as_such(scratch: Path) -> None:
    with socket.socket() as taken:
        # SO_REUSEPORT on the holder too: the service must still refuse to share the port.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SetupError, match=f"port {port} is already in use"):
            EmbeddedPostgres(scratch / "pg", port=port).start()


# -- root: the run-as account and where the data goes ----------------------------


@root_only
def test_as_root_the_server_runs_as_an_unprivileged_owner_of_the_data_dir(pg: EmbeddedPostgres) -> None:
    pg.start()
    st = pg.data_dir.stat()
    assert st.st_uid != 0
    assert stat.S_IMODE(st.st_mode) == 0o700
    pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    assert os.stat(f"/proc/{pid}").st_uid == st.st_uid
    assert pg.placement is not None and not pg.placement.relocated


@root_only
def test_as_root_a_state_dir_the_server_cannot_reach_gets_its_data_elsewhere_and_finds_it_again(
    scratch: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Like a checkout in root's home or in a `mktemp -d` folder: mode 0700.
    closed = scratch / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    state = closed / "checkout" / ".duet"
    relocation_root = scratch / "relocated"
    caplog.set_level("INFO", logger="duet.db")
    (state / "pg").mkdir(parents=True)  # the empty folder a failed start of an older version left behind

    first = EmbeddedPostgres(state / "pg", relocation_root=relocation_root)
    try:
        dsn = first.start()
        execute(dsn, "CREATE TABLE kept (v text)", "INSERT INTO kept VALUES ('per checkout')")
    finally:
        first.stop()

    data = first.data_dir
    assert first.placement is not None and first.placement.relocated
    assert data.parent.parent == relocation_root and data.name == "pg"
    assert not (state / "pg").exists()
    # Said where, and why: in the log and in the placement the CLI prints.
    assert str(closed) in first.placement.reason and "cannot traverse" in first.placement.reason
    assert any(str(data) in r.getMessage() and str(closed) in r.getMessage() for r in caplog.records)
    # Parents only root writes and everyone may traverse; the data dir the server account's alone.
    for folder in (relocation_root, data.parent):
        st = folder.lstat()
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o711
    st = data.stat()
    assert st.st_uid != 0 and stat.S_IMODE(st.st_mode) == 0o700
    assert (data.parent / "state-dir").read_text().strip() == str(state.resolve())
    assert os.readlink(state / postgres_placement.POINTER_NAME) == str(data.parent)

    second = EmbeddedPostgres(state / "pg", relocation_root=relocation_root)
    try:
        assert fetchval(second.start(), "SELECT v FROM kept") == "per checkout"
        assert second.data_dir == data
    finally:
        second.stop()


def test_every_state_dir_has_its_own_relocation_folder(scratch: Path) -> None:
    root = scratch / "relocated"
    a, b = scratch / "a" / ".duet", scratch / "b" / ".duet"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (scratch / "link-to-a").symlink_to(scratch / "a")
    folder = postgres_placement.relocation_folder
    assert folder(a / "pg", root) != folder(b / "pg", root)
    # The same checkout reached through a symlink is the same checkout.
    assert folder(scratch / "link-to-a" / ".duet" / "pg", root) == folder(a / "pg", root)


@root_only
def test_as_root_an_existing_cluster_the_server_can_no_longer_reach_fails_clearly(scratch: Path) -> None:
    home = scratch / "home"
    home.mkdir()
    server = EmbeddedPostgres(home / "state" / "pg", relocation_root=scratch / "relocated")
    server.start()
    server.stop()
    home.chmod(0o700)
    with pytest.raises(SetupError) as info:
        EmbeddedPostgres(home / "state" / "pg", relocation_root=scratch / "relocated").start()
    msg = str(info.value)
    assert "existing cluster" in msg and str(home) in msg and "chmod o+x" in msg
    assert not (scratch / "relocated").exists()


@root_only
def test_as_root_a_relocation_folder_someone_else_made_is_not_used(scratch: Path) -> None:
    closed = scratch / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    planted = scratch / "relocated"
    planted.mkdir(mode=0o777)
    os.chown(planted, 65534, 65534)  # in /var/tmp anyone could have made it first
    with pytest.raises(SetupError, match="refusing to keep PostgreSQL data"):
        EmbeddedPostgres(closed / "state" / "pg", relocation_root=planted).start()
    assert list(planted.iterdir()) == []


# -- database_url ---------------------------------------------------------------


async def test_database_url_passes_a_given_url_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedded.DATABASE_URL_ENV, raising=False)
    async with database_url("postgresql://u@db.example:5432/x", state_dir=tmp_path) as url:
        assert url == "postgresql://u@db.example:5432/x"
    monkeypatch.setenv(embedded.DATABASE_URL_ENV, "postgresql://env@db.example/y")
    async with database_url(None, state_dir=tmp_path) as url:
        assert url == "postgresql://env@db.example/y"
    assert not (tmp_path / "pg").exists()


async def test_database_url_starts_and_stops_a_private_cluster(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedded.DATABASE_URL_ENV, raising=False)
    state = scratch / "state"
    async with database_url(state_dir=state) as url:
        assert await _fetchval(url, "SELECT current_database()") == "duet"
        assert (state / "pg" / "postmaster.pid").exists()
    assert not (state / "pg" / "postmaster.pid").exists()
    with pytest.raises(OSError):  # connection refused: the server is gone
        await _fetchval(url, "SELECT 1")


async def test_open_database_says_where_the_data_is(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedded.DATABASE_URL_ENV, raising=False)
    async with open_database(state_dir=scratch / "state") as db:
        assert db.describe() == f"PostgreSQL data in {scratch / 'state' / 'pg'}"
    async with open_database("postgresql://u@db.example:5432/x") as given:
        assert given.url == "postgresql://u@db.example:5432/x" and given.describe() is None


# -- the duet command -----------------------------------------------------------


def test_the_duet_command_reports_an_expected_condition_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(embedded.DATABASE_URL_ENV, raising=False)
    _hide_binaries(monkeypatch, tmp_path)
    assert duet_main(["demo", "--state-dir", str(tmp_path / "state")]) == 1
    err = capsys.readouterr().err
    assert "duet demo: PostgreSQL server binaries not found" in err and "apt-get install postgresql" in err
    assert "Traceback" not in err


def test_the_duet_command_lets_a_bug_show_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from duet.services.cli import cluster_commands

    def broken(*args: object, **kwargs: object) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cluster_commands, "run", broken)
    with pytest.raises(ZeroDivisionError):
        duet_main(["demo"])


# -- services started by the local cluster die with it ----------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_a_service_dies_with_the_supervisor_that_started_it() -> None:
    # A stand-in supervisor: starts a real service the way LocalCluster does, prints its PID, then is SIGKILLed.
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, subprocess, sys, time\n"
            "env = dict(os.environ, DUET_DIE_WITH_PARENT=str(os.getpid()))\n"
            "child = subprocess.Popen([sys.executable, '-m', 'duet.services.cli', 'routing', '--bind', '127.0.0.1:0'],"
            " env=env, stdout=subprocess.PIPE, start_new_session=True)\n"
            "child.stdout.readline()\n"  # its ready line: PR_SET_PDEATHSIG is set by then
            "print(child.pid, flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert supervisor.stdout is not None
    service = int(supervisor.stdout.readline())
    try:
        supervisor.kill()
        supervisor.wait()
        deadline = time.monotonic() + 15
        while _alive(service) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(service), "the service outlived its supervisor"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(service, signal.SIGKILL)


def test_a_service_whose_supervisor_is_already_gone_stops_at_once() -> None:
    env = dict(os.environ, DUET_DIE_WITH_PARENT="1")  # PID 1 is not its parent: the supervisor died first
    proc = subprocess.run(
        [sys.executable, "-m", "duet.services.cli", "routing", "--bind", "127.0.0.1:0"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGTERM
