"""make bench-match: the matchmaker's throughput and time to match with 10,000 waiting, on the durable path."""
