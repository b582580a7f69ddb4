"""Identity: signed, expiring user and service tokens (tokens.py), where secrets and a
service's own token come from (secrets.py), how a token travels (bearer.py) and where a
client gets its tokens (sources.py). No gRPC here; the servers' interceptor is
``duet.services.rpc.auth``."""
