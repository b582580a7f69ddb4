"""Metrics plumbing shared by the services: the Prometheus exposition server.

Each service keeps its own collectors beside its server (for example
``duet.services.edge_server.metrics``) and hands their registry to
:class:`~duet.services.metrics.exposition.MetricsServer`.
"""
