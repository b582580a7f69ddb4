"""In-memory implementations of the matchmaker's ports, for tests and local tools.

Each keeps its port's documented contract (values and errors), records what
it was asked, and lets a test inject the failures real peers have.
``InMemoryStore`` is held to the PostgreSQL Store's behaviour by a contract
test that runs the same checks against both.
"""

from duet.services.matchmaker.fakes.edges import FakeEdges
from duet.services.matchmaker.fakes.friends import InMemoryFriendStore
from duet.services.matchmaker.fakes.latency import FixedLatency
from duet.services.matchmaker.fakes.routing import FakeRouting
from duet.services.matchmaker.fakes.safety import InMemorySafetyStore
from duet.services.matchmaker.fakes.store import InMemoryStore

__all__ = ["FakeEdges", "FakeRouting", "FixedLatency", "InMemoryFriendStore", "InMemorySafetyStore", "InMemoryStore"]
