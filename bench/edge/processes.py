"""The processes under test (bench edges, floor loops): started, commanded over stdin, measured, stopped."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.edge.child_pauses import read_reply
from bench.edge.cpu import cpu_seconds, run_queue_wait_seconds
from bench.loop_lag import Stall

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    ready: dict[str, Any]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def waited(self) -> float:
        return run_queue_wait_seconds(self.pid)

    async def pauses(self) -> tuple[list[float], list[Stall]]:
        """Since the last ask: the child's collector pauses (ms) and its event loop's stalls."""
        return read_reply(await self.command(cmd="pauses"))

    async def command(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError(f"{self.name} exited (see its log {self.ready.get('log')})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name} refused {command.get('cmd')}: {reply['error']}")
        return reply

    async def stop(self) -> None:
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # the child's cue to shut down cleanly
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _open_log(log: Path) -> IO[str]:
    log.parent.mkdir(parents=True, exist_ok=True)
    return open(log, "w")


async def start_child(name: str, module: str, args: list[str], log_dir: Path) -> Child:
    """``python -m module args`` from the repository root; waits for its first JSON line (ready)."""
    log = log_dir / f"{name}.log"
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, GRPC_ENABLE_FORK_SUPPORT="false")
    with _open_log(log) as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"{name} did not start within 30 s (log: {log})") from None
    if not line:
        await proc.wait()
        raise RuntimeError(f"{name} exited at start with status {proc.returncode}: {log.read_text()[-2000:]}")
    ready: dict[str, Any] = json.loads(line)
    ready["log"] = str(log)
    return Child(name, proc, ready)
