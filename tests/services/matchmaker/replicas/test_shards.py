"""The --shards map: regions to shards, and the refusals of a bad map."""

from __future__ import annotations

import pytest

from duet.services.matchmaker.replicas.shards import DEFAULT_SHARD, ShardConfigError, lock_key, parse_shards


def test_default_is_one_world_shard() -> None:
    m = parse_shards("")
    assert m.shards == (DEFAULT_SHARD,) and m.single
    assert m.shard_of("Frankfurt") == m.shard_of("Sydney") == DEFAULT_SHARD


def test_regions_go_to_their_shard_and_the_rest_to_the_wildcard() -> None:
    m = parse_shards("emea=Frankfurt, London; apac=Singapore,Sydney; rest=*")
    assert m.shards == ("emea", "apac", "rest")
    assert m.shard_of("frankfurt") == "emea"
    assert m.shard_of("Sydney") == "apac"
    assert m.shard_of("Virginia") == "rest"
    assert parse_shards(m.describe()) == m


def test_without_a_wildcard_unlisted_regions_go_to_the_first_shard() -> None:
    assert parse_shards("emea=Frankfurt;apac=Sydney").shard_of("Virginia") == "emea"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("emea", "is not NAME=REGION"),
        ("Emea=Frankfurt", "lowercase"),
        ("a=Frankfurt;a=London", "named twice"),
        ("a=Frankfurt;b=frankfurt", "in both"),
        ("a=*;b=*", "one shard takes the rest"),
        ("a=", "lists no region"),
    ],
)
def test_bad_maps_are_refused_in_words(text: str, words: str) -> None:
    with pytest.raises(ShardConfigError, match=words):
        parse_shards(text)


def test_lock_keys_are_stable_and_non_negative() -> None:
    assert lock_key("world") == lock_key("world")
    assert all(0 <= lock_key(f"s{i}") < 2**31 for i in range(1000))
