"""make bench-connect: match -> first frame for every region pair under world WAN emulation."""
