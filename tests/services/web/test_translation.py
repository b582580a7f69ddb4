"""The gateway's JSON <-> protobuf translation and demo regions, without servers."""

from __future__ import annotations

import json

import pytest

from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.web.demo_regions import DemoRegions, UnknownRegion
from duet.services.web.gateway import Closed, ProtocolError, parse_client_message, server_message_json
from duet.v1 import common_pb2, matchmaker_pb2


def test_a_client_message_in_canonical_json_parses_to_the_same_protobuf() -> None:
    message = parse_client_message('{"hello": {"userId": "ana", "displayName": "Ana", "sessionOpen": 12.5}}')
    assert message == matchmaker_pb2.ClientMessage(
        hello=matchmaker_pb2.Hello(user_id="ana", display_name="Ana", session_open=12.5)
    )
    # protobuf's JSON parser also takes the proto field names
    assert parse_client_message('{"find_partner": {"leg_connected": 3}}').find_partner.leg_connected == 3
    assert parse_client_message('{"leave": {}}').WhichOneof("msg") == "leave"


@pytest.mark.parametrize(
    "text",
    ["not json", "[1, 2]", '{"hello": {"userId": 7}}', '{"shout": {}}', '{"hello": {"userId": "a"}, "leave": {}}', ""],
)
def test_anything_else_is_a_protocol_error_that_says_what_to_send(text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(text)
    assert "not a ClientMessage in protobuf JSON" in str(info.value)
    assert '{"hello": {"userId": "ana"}}' in str(info.value)


def test_a_server_message_becomes_its_canonical_json() -> None:
    message = matchmaker_pb2.ServerMessage(
        matched=matchmaker_pb2.Matched(
            call_id="c1",
            partner_display_name="Ben",
            partner_region="Virginia",
            route=["fra-1", "vir-1"],
            stages=common_pb2.StageTimes(matched=1000.5, route_picked=1001.0),
        )
    )
    data = json.loads(server_message_json(message))
    assert data == {
        "matched": {
            "callId": "c1",
            "partnerDisplayName": "Ben",
            "partnerRegion": "Virginia",
            "route": ["fra-1", "vir-1"],
            "stages": {"matched": 1000.5, "routePicked": 1001.0},
        }
    }


def test_the_closed_frame() -> None:
    assert json.loads(Closed("UNAVAILABLE", "gone").to_json()) == {"closed": {"code": "UNAVAILABLE", "message": "gone"}}


def test_demo_regions_by_code_or_name() -> None:
    regions = DemoRegions(["Frankfurt", "Singapore"])
    assert regions.address_for("sin") == DEMO_CLIENT_IPS["Singapore"]
    assert regions.address_for("Frankfurt") == DEMO_CLIENT_IPS["Frankfurt"]
    with pytest.raises(UnknownRegion, match=r"unknown region 'vir': this gateway offers fra \(Frankfurt\), sin"):
        regions.address_for("vir")
    assert not DemoRegions([])
    with pytest.raises(UnknownRegion, match="no demo address for region 'Atlantis'"):
        DemoRegions(["Atlantis"])
