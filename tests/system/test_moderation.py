"""Moderation on the whole system: a user held after reports (rows in PostgreSQL) is refused a
partner, listed by `duet moderation held`, cleared by an ops-admin with `duet moderation clear`,
and matched again in the same session; looking is not clearing."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from duet.services.auth.tokens import Role
from duet.services.client.inbox import DuetClientError
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster
from duet.services.devkit.synthetic_media import synthetic_client
from duet.services.store.postgres import Store

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterInfo]:
    state = tmp_path_factory.mktemp("cluster-moderation")
    async with LocalCluster(state_dir=Path(state), database=database_url) as info:
        yield info


async def duet(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "duet.services.cli",
        "moderation",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_held_user_is_cleared_from_the_command_line_and_matched_again(
    cluster: ClusterInfo, tmp_path: Path
) -> None:
    # Three people reported mod-dara after calls (written as the matchmaker writes them).
    store = await Store.open(cluster.database_url)
    try:
        for user in ("mod-dara", "mod-r1", "mod-r2", "mod-r3"):
            await store.upsert_user(user, user.title())
        for n, reporter in enumerate(("mod-r1", "mod-r2", "mod-r3")):
            await store.add_report(reporter, "mod-dara", f"call-{n}", "spam links")
    finally:
        await store.close()
    env = {k: v for k, v in os.environ.items() if k not in ("DUET_OPS_TOKEN", "DUET_AUTH_SECRETS")}
    env["DUET_AUTH_SECRETS"] = str(cluster.secrets_path)
    mm = ["--matchmaker", cluster.matchmaker]

    code, out, err = await duet("held", *mm, env=env, cwd=tmp_path)
    assert code == 0, err
    (row,) = [line for line in out.splitlines() if line.startswith("mod-dara")]
    assert row.split()[1:3] == ["Mod-Dara", "3"], out

    dara = synthetic_client(
        cluster.matchmaker,
        "mod-dara",
        "Dara",
        tag=5151,
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        token=cluster.user_tokens("mod-dara"),
        match_timeout=20,
    )
    eli = synthetic_client(
        cluster.matchmaker,
        "mod-eli",
        "Eli",
        tag=6161,
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        token=cluster.user_tokens("mod-eli"),
        match_timeout=20,
    )
    try:
        await asyncio.gather(dara.connect(), eli.connect())
        with pytest.raises(DuetClientError, match="until a moderator has reviewed"):
            await dara.find_partner()

        # An ops-read token may look but not clear; nothing changes.
        read_only = cluster.service_token(Role.OPS_READ, "vik")
        code, _, err = await duet("clear", "mod-dara", *mm, "--token", read_only, env=env, cwd=tmp_path)
        assert code == 1 and "not allowed" in err and "ops-admin" in err, err
        code, out, err = await duet("reports", "mod-dara", *mm, env=env, cwd=tmp_path)
        assert code == 0 and "HELD for review" in out and out.count(" counts ") == 3, out

        code, out, err = await duet("clear", "mod-dara", *mm, "--note", "links were fine", env=env, cwd=tmp_path)
        assert code == 0, err
        assert "cleared mod-dara: 3 reports stop counting" in out
        code, _, err = await duet("clear", "mod-dara", *mm, env=env, cwd=tmp_path)
        assert code == 1 and "nothing to clear" in err

        # The same session, at once: matched with the other waiting user.
        ra, rb = await asyncio.gather(dara.find_partner(), eli.find_partner())
        assert ra.call_id == rb.call_id
        assert ra.first_marker is not None and ra.first_marker.tag == 6161
    finally:
        await asyncio.gather(dara.leave(), eli.leave())

    code, out, err = await duet("reports", "mod-dara", *mm, env=env, cwd=tmp_path)
    assert code == 0 and "not held" in out and out.count(" cleared ") == 3, out
    assert "'links were fine'" in out
    code, out, _ = await duet("held", *mm, env=env, cwd=tmp_path)
    assert code == 0 and "nobody is held for review" in out
    code, _, err = await duet("reports", "nobody-here", *mm, env=env, cwd=tmp_path)
    assert code == 1 and "no user 'nobody-here'" in err
