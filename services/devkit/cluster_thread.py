"""A LocalCluster on a thread of its own, for synchronous callers: pytest fixtures, hypothesis examples.

The cluster's supervisor work (its processes, and under WAN emulation the
clients' TCP delay proxies) needs an event loop that keeps running while the
caller's code runs. A test's own loop only runs during that test, and each
test may get a new one, so a cluster kept across tests cannot live on it.
Here the cluster gets a loop in a thread started for it: clients on any
other loop reach it over loopback TCP and UDP as they would a remote one.

The thread lives exactly as long as the cluster: the services it spawns ask
to die with the thread that started them (PR_SET_PDEATHSIG), so they never
outlive it, and ``stop()`` stops them in order before the thread ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from types import TracebackType

from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster

__all__ = ["ClusterThread"]


class ClusterThread:
    """Runs ``cluster`` on a private loop in a daemon thread; ``start()`` returns its ClusterInfo."""

    def __init__(self, cluster: LocalCluster, *, name: str = "duet-cluster") -> None:
        self.cluster = cluster
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_asked: asyncio.Event | None = None
        self._stop_requested = threading.Event()  # seen by a start still under way
        self._started: concurrent.futures.Future[ClusterInfo] = concurrent.futures.Future()
        self._stopped: concurrent.futures.Future[None] = concurrent.futures.Future()

    def start(self, timeout: float = 300.0) -> ClusterInfo:
        """Start the cluster and wait until every service is ready; raises what starting raised (SetupError...)."""
        if self._thread is not None:
            raise RuntimeError("this ClusterThread was started already")
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        try:
            return self._started.result(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 120.0) -> None:
        """Stop the cluster (services in order, then PostgreSQL) and end the thread. Safe to call twice."""
        thread = self._thread
        if thread is None:
            return
        self._stop_requested.set()
        loop, asked = self._loop, self._stop_asked
        if loop is not None and asked is not None and not loop.is_closed():
            # The loop may have closed between the check and the call: then there is nothing to stop.
            try:
                loop.call_soon_threadsafe(asked.set)
            except RuntimeError:
                pass
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"the local cluster did not stop within {timeout:.0f} s")
        self._stopped.result(0)  # re-raises an error the cluster's stop raised

    def __enter__(self) -> ClusterInfo:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported through the futures; a thread has nobody else to tell
            if not self._started.done():
                self._started.set_exception(exc)  # start() raises it; stopping had nothing to do
                self._stopped.set_result(None)
            elif not self._stopped.done():
                self._stopped.set_exception(exc)  # stopping failed: stop() raises it
        else:
            if not self._started.done():
                self._started.set_exception(RuntimeError("the local cluster's thread ended before it started"))
            if not self._stopped.done():
                self._stopped.set_result(None)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_asked = asyncio.Event()
        async with self.cluster as info:
            self._started.set_result(info)
            if not self._stop_requested.is_set():
                await self._stop_asked.wait()
