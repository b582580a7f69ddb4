"""The edge process: EdgeControl gRPC over a ``duet.edge.relay.EdgeRelay``, kept registered with routing."""
