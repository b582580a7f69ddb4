"""Which topology the routing service starts with: the last one applied, or its --topology file.

Changes made through the admin API are recorded with the topology they left
(``TopologyAudit``); a restart must not undo them, so the newest recorded
topology wins over the file. The file is the starting point only when the log
is empty, or when the operator asks for it (``--reset-topology``); either way
loading it is recorded too, so the log always explains what is running.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from duet.routing.topology import Topology, TopologyError
from duet.routing.topology_diff import diff_topologies
from duet.routing.topology_file import topology_document
from duet.services.store.topology_audit import TopologyAudit, TopologyChangeRow

logger = logging.getLogger("duet.routing")

STARTUP_ACTOR = "duet routing (start)"


def _recorded(row: TopologyChangeRow) -> Topology:
    try:
        return Topology.from_dict({**row.topology, "version": row.version_after})
    except (TopologyError, TypeError, KeyError) as exc:
        raise SystemExit(
            f"the topology recorded by change {row.change_id} ({row.action} by {row.actor}) cannot be read: {exc}; "
            "start with --reset-topology to serve the --topology file instead"
        ) from exc


async def startup_topology(file_topology: Topology, audit: TopologyAudit, *, source: str, reset: bool) -> Topology:
    """The topology to serve: the last recorded one unless ``reset`` or the log is empty (then the file's)."""
    latest = await audit.latest()
    if latest is not None and not reset:
        restored = _recorded(latest)
        when = datetime.fromtimestamp(latest.applied_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        logger.info(
            "restored topology v%d (change %d, %s by %s at %s); the --topology file (%s) is not used "
            "(start with --reset-topology to serve it instead)",
            restored.version,
            latest.change_id,
            latest.action,
            latest.actor,
            when,
            source,
        )
        return restored
    if latest is None:
        topology = file_topology
        changes = [
            f"started from {source}: {len(topology.regions)} regions, {len(topology.edges)} edges, "
            f"{len(topology.links)} links"
        ]
        version_before = 0
    else:
        previous = _recorded(latest)
        # Versions keep increasing across restarts: edges and logs compare them.
        topology = file_topology.with_version(max(file_topology.version, previous.version + 1))
        changes = [f"reset to {source}"] + [str(c) for c in diff_topologies(previous, topology)]
        version_before = previous.version
    await audit.record(
        actor=STARTUP_ACTOR,
        action="load file",
        changes=changes,
        version_before=version_before,
        version_after=topology.version,
        topology=topology_document(topology),
    )
    return topology
