"""Duet's services, one package per role.

- ``rpc``             gRPC plumbing every server shares: error -> status mapping, start and stop
- ``store``           PostgreSQL access (asyncpg) and schema migrations
- ``routing_server``  the routing service (gRPC over ``duet.routing``)
- ``edge_server``     the edge process (gRPC over ``duet.edge``)
- ``matchmaker``      the matchmaker: its core, pairing rules, ports and fakes, and its gRPC server
- ``client``          the client SDK: one user's Session stream and WebRTC leg, any media tracks
- ``devkit``          test and demo tooling: synthetic media, embedded PostgreSQL, the local cluster
- ``cli``             the ``duet`` command
"""
