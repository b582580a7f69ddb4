"""The SDK's reconnect rules: the address list, the backoff, and which stream ends call for a new session."""

from __future__ import annotations

import grpc
import pytest

from duet.services.client.inbox import DuetClientError
from duet.services.client.reconnect import ReconnectPolicy, is_reconnectable, matchmaker_addresses, worth_another_try
from duet.services.client.session import DuetClient


def test_addresses_from_a_comma_list_or_a_list() -> None:
    assert matchmaker_addresses("127.0.0.1:1, 127.0.0.1:2") == ("127.0.0.1:1", "127.0.0.1:2")
    assert matchmaker_addresses(["127.0.0.1:1", "127.0.0.1:2,127.0.0.1:1"]) == ("127.0.0.1:1", "127.0.0.1:2")
    with pytest.raises(ValueError, match="no matchmaker address"):
        matchmaker_addresses(" , ")


def test_backoff_starts_at_once_then_doubles_to_its_cap() -> None:
    assert list(ReconnectPolicy(attempts=6, first_delay_s=0.2, max_delay_s=1.0).delays()) == [
        0.0,
        0.2,
        0.4,
        0.8,
        1.0,
        1.0,
    ]
    with pytest.raises(ValueError, match="attempts"):
        ReconnectPolicy(attempts=0)


def test_only_an_unavailable_matchmaker_calls_for_a_new_session() -> None:
    assert is_reconnectable(DuetClientError("gone", code=grpc.StatusCode.UNAVAILABLE))
    assert not is_reconnectable(DuetClientError("bad token", code=grpc.StatusCode.UNAUTHENTICATED))
    assert not is_reconnectable(DuetClientError("timed out"))


def test_a_session_that_could_not_be_opened_is_tried_again_unless_refused() -> None:
    assert worth_another_try(DuetClientError("refused", code=grpc.StatusCode.UNAVAILABLE))
    assert worth_another_try(DuetClientError("placeholder", code=grpc.StatusCode.INTERNAL))
    assert worth_another_try(DuetClientError("timed out"))
    assert not worth_another_try(DuetClientError("bad token", code=grpc.StatusCode.UNAUTHENTICATED))


def test_the_client_takes_several_addresses_and_dials_the_first() -> None:
    client = DuetClient("127.0.0.1:1,127.0.0.1:2", "ana", "Ana", restrict_ice=False)
    assert client.matchmaker_addresses == ("127.0.0.1:1", "127.0.0.1:2")
    assert client.matchmaker_address == "127.0.0.1:1"
