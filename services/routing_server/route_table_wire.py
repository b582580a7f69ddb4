"""RouteTable messages assembled as wire bytes from the route arrays: no protobuf object per entry.

A table at 500 edges has 499 ``NextHop`` entries; one message object per
entry costs ~1 µs, half a millisecond a table, a quarter of a second to push
new tables to 500 edges. But all of an entry except its RTT depends only on
the edges involved (destination id and number, next hop id and backbone
address), so those parts are encoded once per route set, and a table is
those parts and each entry's RTT copied into one buffer by a single numpy
gather. The protobuf wire format (protobuf.dev, "Encoding") makes a message
the concatenation of its encoded fields, in any order; upb parses the result
back into a ``RouteTable`` in ~30 µs, and that is what gRPC sends. Field
numbers and wire types come from the generated descriptors, so the bytes
follow the .proto.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from duet.routing.all_pairs import AllPairsRoutes, NextHopRows
from duet.v1 import routing_pb2

__all__ = ["RouteTableEncoder"]

_LEN, _VARINT, _FIXED64 = 2, 0, 1  # wire types


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _text(field: int, value: str) -> bytes:
    raw = value.encode()
    return _tag(field, _LEN) + _varint(len(raw)) + raw if raw else b""  # proto3 leaves out ""


def _element(field: int, value: str) -> bytes:
    raw = value.encode()  # an element of a repeated string is sent even when empty
    return _tag(field, _LEN) + _varint(len(raw)) + raw


def _number(field: int, value: int) -> bytes:
    return _tag(field, _VARINT) + _varint(value) if value else b""


_HOP = {f.name: f.number for f in routing_pb2.NextHop.DESCRIPTOR.fields}
_TABLE = {f.name: f.number for f in routing_pb2.RouteTable.DESCRIPTOR.fields}
_RTT_TAG = _tag(_HOP["path_rtt_ms"], _FIXED64)
_ENTRY_TAG = _tag(_TABLE["entries"], _LEN)
# An entry's RTT field: its tag then the IEEE 754 double, little-endian (fixed64 wire type).
_RTT_FIELD = np.dtype([("tag", np.uint8, (len(_RTT_TAG),)), ("value", "<f8")])


@dataclass(frozen=True, eq=False)
class _Parts:
    """One route set's per-edge entry parts, all in one byte pool, with where each starts and its length."""

    pool: npt.NDArray[np.uint8]
    dest_start: npt.NDArray[np.intp]  # dest_edge_id + dest_number of edge i
    dest_len: npt.NDArray[np.intp]
    hop_start: npt.NDArray[np.intp]  # next_hop_edge_id + next_hop_backbone_address of edge i
    hop_len: npt.NDArray[np.intp]
    prefix_start: npt.NDArray[np.intp]  # entries tag + length varint of an entry of length L
    prefix_len: npt.NDArray[np.intp]

    @classmethod
    def of(cls, routes: AllPairsRoutes) -> _Parts:
        dests = [
            _text(_HOP["dest_edge_id"], e) + _number(_HOP["dest_number"], int(number))
            for e, number in zip(routes.edge_ids, routes.numbers, strict=True)
        ]
        hops = [
            _text(_HOP["next_hop_edge_id"], e) + _text(_HOP["next_hop_backbone_address"], str(address))
            for e, address in zip(routes.edge_ids, routes.backbone_addresses, strict=True)
        ]
        longest = max((len(d) for d in dests), default=0) + max((len(h) for h in hops), default=0) + _RTT_FIELD.itemsize
        prefixes = [_ENTRY_TAG + _varint(length) for length in range(longest + 1)]
        pieces = [*dests, *hops, *prefixes]
        lengths = np.array([len(p) for p in pieces], dtype=np.intp)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.intp)
        n = len(dests)
        return cls(
            np.frombuffer(b"".join(pieces), dtype=np.uint8),
            starts[:n],
            lengths[:n],
            starts[n : 2 * n],
            lengths[n : 2 * n],
            starts[2 * n :],
            lengths[2 * n :],
        )

    def entries(self, rows: NextHopRows) -> bytes:
        """The encoded ``entries`` fields of these rows, in order."""
        m = len(rows)
        if not m:
            return b""
        rtt = np.empty(m, dtype=_RTT_FIELD)
        rtt["tag"] = np.frombuffer(_RTT_TAG, dtype=np.uint8)
        rtt["value"] = rows.path_rtt_ms
        body_len = self.dest_len[rows.dests] + self.hop_len[rows.hops] + _RTT_FIELD.itemsize
        source = np.concatenate([self.pool, rtt.view(np.uint8).ravel()])
        # Each entry is four segments of the source: prefix, destination part, next-hop part, RTT.
        seg_start = np.stack(
            [
                self.prefix_start[body_len],
                self.dest_start[rows.dests],
                self.hop_start[rows.hops],
                len(self.pool) + _RTT_FIELD.itemsize * np.arange(m),
            ],
            axis=1,
        ).ravel()
        seg_len = np.stack(
            [
                self.prefix_len[body_len],
                self.dest_len[rows.dests],
                self.hop_len[rows.hops],
                np.full(m, _RTT_FIELD.itemsize),
            ],
            axis=1,
        ).ravel()
        out_start = np.cumsum(seg_len) - seg_len
        gather = np.arange(int(seg_len.sum())) + np.repeat(seg_start - out_start, seg_len)
        return bytes(source[gather].tobytes())


class RouteTableEncoder:
    """Builds ``RouteTable`` messages for one route set after another (keeps the last set's parts)."""

    def __init__(self) -> None:
        self._routes: AllPairsRoutes | None = None
        self._parts: _Parts | None = None

    def table(
        self,
        routes: AllPairsRoutes,
        edge_id: str,
        version: int,
        rows: NextHopRows,
        *,
        delta: bool = False,
        removed: Sequence[str] = (),
        table_size: int,
    ) -> routing_pb2.RouteTable:
        """``rows`` of ``routes`` as one message (the whole table, or with ``delta`` a change of it)."""
        if self._routes is not routes or self._parts is None:
            self._routes, self._parts = routes, _Parts.of(routes)
        head = (
            _text(_TABLE["edge_id"], edge_id)
            + _number(_TABLE["version"], version)
            + _number(_TABLE["delta"], int(delta))
            + b"".join(_element(_TABLE["removed_dest_edge_ids"], dest) for dest in removed)
            + _number(_TABLE["table_size"], table_size)
        )
        return routing_pb2.RouteTable.FromString(head + self._parts.entries(rows))
