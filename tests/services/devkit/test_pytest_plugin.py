"""The pytest plugin used the way a team uses it: a topology file, a test file, a pytest run of its own."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ("pytester",)

# A team's topology: three regions, and a London-Virginia link far slower than the measured one
# (the reference RTT is about 75 ms), so a call that crosses it shows the file was the one run.
TOPOLOGY = """\
regions: [Frankfurt, London, Virginia]
edges:
- {edge_id: fra-1, number: 1, region: Frankfurt}
- {edge_id: lon-1, number: 2, region: London}
- {edge_id: vir-1, number: 3, region: Virginia}
links:
- {a: fra-1, b: lon-1}
- {a: fra-1, b: vir-1, rtt_ms: 400}
- {a: lon-1, b: vir-1, rtt_ms: 240}
"""

TEAM_TESTS = """\
import asyncio

import pytest


@pytest.mark.asyncio
async def test_london_to_virginia_within_the_model_bound(duet_client, duet_cluster):
    ana = await duet_client("London", user="ana")
    ben = await duet_client("Virginia", user="ben")
    a, b = await asyncio.gather(ana.find_partner(), ben.find_partner())
    assert a.call_id == b.call_id and set(a.route) == {"lon-1", "vir-1"}
    prediction = duet_cluster.predict("London", "Virginia")
    assert prediction.backbone_ms == 120  # the file's 240 ms link, not the measured RTT
    for call in (a, b):
        assert prediction.backbone_ms < call.connect_ms <= duet_cluster.bound_ms("London", "Virginia")


@pytest.mark.asyncio
async def test_a_budget_the_topology_cannot_meet_fails(duet_client):
    ana = await duet_client("London", user="ana-2")
    ben = await duet_client("Virginia", user="ben-2")
    a, _ = await asyncio.gather(ana.find_partner(), ben.find_partner())
    assert a.connect_ms < 100, f"connect {a.connect_ms:.0f} ms"


@pytest.mark.asyncio
async def test_a_region_outside_the_shipped_ones_is_refused_in_words(duet_client):
    with pytest.raises(ValueError, match="shipped regions only"):
        await duet_client("Atlantis")
"""


@pytest.mark.slow
def test_a_team_asserts_connect_times_for_its_own_topology(pytester: pytest.Pytester, database_url: str) -> None:
    pytester.makefile(".yaml", team_topology=TOPOLOGY)
    pytester.makepyfile(test_team=TEAM_TESTS)
    pytester.makeini(
        textwrap.dedent(
            """\
            [pytest]
            duet_topology = team_topology.yaml
            duet_control_region = Frankfurt
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--duet-database-url", database_url, timeout=240)
    result.assert_outcomes(passed=2, failed=1)
    # The budget's failure reaches the team's report with the measured figure in it.
    result.stdout.re_match_lines([r".*AssertionError: connect \d+ ms"])


def test_a_bad_topology_file_stops_the_session_in_words(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", broken=TOPOLOGY.replace("region: Virginia", "region: Virginie"))
    pytester.makepyfile(test_team="def test_uses_the_cluster(duet_cluster):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--duet-topology", "broken.yaml", timeout=60)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*the topology file*broken.yaml cannot be used*"])
    result.stdout.fnmatch_lines(["*region 'Virginie' is not declared under regions*"])


def test_the_options_are_listed_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help", timeout=60)
    result.stdout.fnmatch_lines(["*--duet-topology=FILE*", "*--duet-control-region=NAME*", "*--duet-last-mile-ms=MS*"])


def test_a_cluster_that_cannot_start_fails_the_session_in_words(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", team_topology=TOPOLOGY)
    pytester.makepyfile(test_team="def test_uses_the_cluster(duet_cluster):\n    pass\n")
    args = ("-p", "no:cacheprovider", "--duet-topology", "team_topology.yaml")
    result = pytester.runpytest_subprocess(
        *args, "--duet-database-url", "postgresql://nobody@127.0.0.1:1/none", timeout=120
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*duet: the local cluster did not start:*"])
