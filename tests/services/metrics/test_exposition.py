"""MetricsServer over real TCP on loopback: scraped with an HTTP client, both exposition formats."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from duet.services.metrics.exposition import MetricsServer
from duet.services.rpc.server import CannotListen


def _registry() -> tuple[CollectorRegistry, Counter]:
    registry = CollectorRegistry()
    counter = Counter("duet_test_things", "things counted by the test", ["kind"], registry=registry)
    return registry, counter


async def test_a_scrape_over_http_reads_the_registry_at_that_moment() -> None:
    registry, counter = _registry()
    counter.labels(kind="apple").inc(3)
    async with MetricsServer(registry, port=0) as url, aiohttp.ClientSession() as http:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        async with http.get(url) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            first = await response.text()
        counter.labels(kind="apple").inc(2)
        counter.labels(kind="pear").inc()
        async with http.get(url) as response:
            second = await response.text()

    def values(text: str) -> dict[str, float]:
        (family,) = [f for f in text_string_to_metric_families(text) if f.name == "duet_test_things"]
        return {s.labels["kind"]: s.value for s in family.samples if s.name == "duet_test_things_total"}

    assert values(first) == {"apple": 3.0}
    assert values(second) == {"apple": 5.0, "pear": 1.0}


async def test_an_openmetrics_scraper_gets_openmetrics() -> None:
    registry, counter = _registry()
    counter.labels(kind="apple").inc()
    openmetrics = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with (
        MetricsServer(registry, port=0) as url,
        aiohttp.ClientSession() as http,
        http.get(url, headers=openmetrics) as response,
    ):
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await response.text()
    assert text.rstrip().endswith("# EOF")
    assert 'duet_test_things_total{kind="apple"} 1.0' in text


async def test_the_port_is_closed_once_the_server_has_stopped() -> None:
    registry, _ = _registry()
    async with MetricsServer(registry, port=0) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


async def test_a_taken_port_is_refused_in_words() -> None:
    registry, _ = _registry()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotListen, match=f"cannot serve metrics on 127.0.0.1:{port}: the port is taken"):
            async with MetricsServer(registry, port=port):
                pass
