"""The matchmaker: sessions, pairing, and the fan-out that starts a call."""
