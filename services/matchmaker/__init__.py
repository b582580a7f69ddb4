"""The matchmaker: sessions, pairing, and the fan-out that starts a call.

core (sessions and calls) and pool (the pairing rule) depend only on ports
(the Protocols for routing, edges and the store), errors and events.
remote_peers implements the routing and edge ports over gRPC, fakes
implements all three in memory, and server is the gRPC service around core.
"""
