"""The duet command: expected conditions end with a message and a non-zero exit, not a traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

from duet.services.auth.secrets import SERVICE_SECRET_ENV, AuthSecrets, ensure_secrets_file
from duet.services.auth.tokens import mint_user_token, verify_service_token, verify_user_token
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemoryStore
from duet.services.matchmaker.server import MatchmakerServicer
from duet.services.rpc.auth import AuthInterceptor
from duet.services.rpc.server import start_server
from duet.v1 import matchmaker_pb2_grpc


def test_a_taken_port_ends_a_service_with_a_message_not_a_traceback() -> None:
    with socket.socket() as taken:
        # SO_REUSEPORT on the holder too: the service must still refuse to share the port.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "duet.services.cli", "routing", "--bind", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, **{SERVICE_SECRET_ENV: "ab" * 32}),
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_cli_module_does_not_import_grpc_before_it_configures_it() -> None:
    # gRPC reads GRPC_ENABLE_FORK_SUPPORT when it is imported; main() sets it first.
    probe = "import sys, duet.services.cli.main; print('grpc' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


def duet(*args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DUET_")}
    return subprocess.run(
        [sys.executable, "-m", "duet.services.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean | (env or {}),
        cwd=cwd,
    )


def test_services_without_secrets_or_a_token_say_what_to_give_them(tmp_path: Path) -> None:
    proc = duet("routing", "--bind", "127.0.0.1:0", cwd=str(tmp_path))
    assert proc.returncode != 0 and "no token-signing secrets: give --auth-secrets FILE" in proc.stderr
    secrets = {SERVICE_SECRET_ENV: "ab" * 32, "DUET_CLUSTER_KEY": "k"}
    proc = duet("edge", "--edge-id", "fra-1", env=secrets, cwd=str(tmp_path))
    assert proc.returncode != 0
    assert "no service token: set $DUET_SERVICE_TOKEN" in proc.stderr and "--edge-id fra-1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_token_mint_prints_tokens_the_services_accept(tmp_path: Path) -> None:
    secrets = ensure_secrets_file(tmp_path / ".duet" / "auth-secrets.json")
    assert secrets.user is not None and secrets.service is not None
    proc = duet("token", "mint", "--user", "ana", "--ttl", "15m", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    claims = verify_user_token(secrets.user, proc.stdout.strip())
    assert claims.user_id == "ana" and claims.expires_at - claims.issued_at == 900
    proc = duet("token", "mint", "--role", "edge", "--edge-id", "fra-1", cwd=str(tmp_path))
    assert verify_service_token(secrets.service, proc.stdout.strip()).edge_id == "fra-1"
    proc = duet("token", "mint", "--role", "ops-admin", "--name", "alice", cwd=str(tmp_path))
    assert verify_service_token(secrets.service, proc.stdout.strip()).name == "ops-admin:alice"

    proc = duet("token", "mint", "--role", "edge", cwd=str(tmp_path))
    assert proc.returncode != 0 and "give --edge-id" in proc.stderr
    proc = duet("token", "mint", "--user", "not valid", cwd=str(tmp_path))
    assert proc.returncode != 0 and "user id must be 1-64 characters" in proc.stderr
    elsewhere = tmp_path / "elsewhere-without-secrets"
    elsewhere.mkdir()
    proc = duet("token", "mint", "--user", "ana", cwd=str(elsewhere))
    assert proc.returncode != 0 and "no secrets to sign with" in proc.stderr


async def test_duet_call_with_a_refused_token_says_why_in_words() -> None:
    secrets = AuthSecrets(b"u" * 32, b"s" * 32, "test")
    mm = Matchmaker(InMemoryStore(), FakeRouting([]), FakeEdges())
    servicer = MatchmakerServicer(mm)
    server, address = await start_server(
        "127.0.0.1:0",
        lambda s: matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(servicer, s),
        interceptors=[AuthInterceptor(secrets)],
    )
    forged = mint_user_token(b"x" * 32, "ana")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "duet.services.cli",
            "call",
            "--matchmaker",
            address,
            "--token",
            forged,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await mm.stop()
        await server.stop(None)
    assert proc.returncode == 1
    said = err.decode().strip().splitlines()[-1]  # the last word; a logged warning may come first
    # How far the client got before the refusal arrived varies (the Hello write or the read); the words do not.
    assert said.startswith("duet call: "), said
    assert "UNAUTHENTICATED: Session refused the token: token signature does not match" in said, said
    assert "Traceback" not in err.decode()
