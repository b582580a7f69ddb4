"""`duet geoip` and the routing service's default database choice."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from duet.routing.geo_database import DBIP_CITY_LITE
from duet.services.cli.main import main
from duet.services.cli.serve import default_geoip_databases


def test_where_without_a_database_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DUET_GEOIP_DIR", str(tmp_path))
    assert main(["geoip", "where"]) == 1
    err = capsys.readouterr().err
    assert "not installed" in err and "duet geoip install" in err


def test_routing_without_a_database_warns_and_uses_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DUET_GEOIP_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING):
        assert default_geoip_databases() == []
    assert "no GeoIP database installed" in caplog.text


def test_routing_uses_the_installed_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUET_GEOIP_DIR", str(tmp_path))
    (tmp_path / DBIP_CITY_LITE.file_name).write_bytes(b"")
    assert default_geoip_databases() == [tmp_path / DBIP_CITY_LITE.file_name]


def test_install_is_a_no_op_when_the_checked_file_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DUET_GEOIP_DIR", str(tmp_path))
    (tmp_path / DBIP_CITY_LITE.file_name).write_bytes(b"")
    (tmp_path / (DBIP_CITY_LITE.file_name + ".sha256")).write_text(DBIP_CITY_LITE.sha256 + "\n")
    assert main(["geoip", "install"]) == 0
    assert "already installed" in capsys.readouterr().out
