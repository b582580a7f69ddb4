"""The web gateway: serves the browser client and carries its Session protocol over a WebSocket."""
