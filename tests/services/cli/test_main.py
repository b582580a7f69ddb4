"""The duet command: expected conditions end with a message and a non-zero exit, not a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys


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
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_cli_module_does_not_import_grpc_before_it_configures_it() -> None:
    # gRPC reads GRPC_ENABLE_FORK_SUPPORT when it is imported; main() sets it first.
    probe = "import sys, duet.services.cli.main; print('grpc' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr
