"""RTP header extensions (RFC 8285) translated from one leg's terms into another's.

Two legs of a bridge negotiate their extension IDs independently: Chromium may
send abs-send-time as ID 2 while the partner's leg agreed on ID 3 for
something else. A receiver reads each element by the ID it negotiated, and
aiortc raises inside its transport's receive loop (ending the leg) when an
element's value does not have the length its URI requires. So every element
is mapped to the receiving leg's ID for the same URI, dropped when that leg
did not negotiate the URI, and dropped when its value is malformed for the
URI; the block is rebuilt (one-byte form when every element fits it, else
two-byte form if the receiver allows it) and the rest of the packet (CSRCs,
payload, RTP padding) is kept byte for byte.

Between edges, extensions travel under ``BACKBONE_IDS``, a fixed map of the
URIs Duet understands, so each edge only needs its own legs' maps: the
sending edge maps its client's IDs to backbone IDs, the receiving edge maps
backbone IDs to its client's.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "ABS_SEND_TIME",
    "AUDIO_LEVEL",
    "BACKBONE_IDS",
    "MID",
    "REPAIRED_RTP_STREAM_ID",
    "RTP_STREAM_ID",
    "TRANSMISSION_OFFSET",
    "TRANSPORT_CC",
    "ExtensionRewriter",
    "Form",
    "MalformedExtensions",
    "elements",
]

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
RTP_STREAM_ID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RTP_STREAM_ID = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
TRANSMISSION_OFFSET = "urn:ietf:params:rtp-hdrext:toffset"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TRANSPORT_CC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
VIDEO_ORIENTATION = "urn:3gpp:video-orientation"
PLAYOUT_DELAY = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
ABS_CAPTURE_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time"


@dataclass(frozen=True)
class _Length:
    """A value rule: one of these lengths (the fast path knows single-length rules)."""

    allowed: tuple[int, ...]

    def __call__(self, value: bytes) -> bool:
        return len(value) in self.allowed


def _length(*allowed: int) -> Callable[[bytes], bool]:
    return _Length(allowed)


def _text(encoding: str) -> Callable[[bytes], bool]:
    def valid(value: bytes) -> bool:
        try:
            value.decode(encoding)
        except UnicodeDecodeError:
            return False
        return len(value) > 0

    return valid


# What a well-formed value of each understood URI looks like. aiortc unpacks the
# fixed-size ones with struct (a wrong length raises) and decodes the names.
_VALUE_RULES: Mapping[str, Callable[[bytes], bool]] = MappingProxyType(
    {
        MID: _text("utf-8"),
        RTP_STREAM_ID: _text("ascii"),
        REPAIRED_RTP_STREAM_ID: _text("ascii"),
        ABS_SEND_TIME: _length(3),
        TRANSMISSION_OFFSET: _length(3),
        AUDIO_LEVEL: _length(1),
        TRANSPORT_CC: _length(2),
        VIDEO_ORIENTATION: _length(1),
        PLAYOUT_DELAY: _length(3),
        ABS_CAPTURE_TIME: _length(8, 16),
    }
)

# The IDs extensions carry on the backbone: every URI above, numbered once.
BACKBONE_IDS: Mapping[str, int] = MappingProxyType({uri: i for i, uri in enumerate(_VALUE_RULES, start=1)})

ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000  # RFC 8285 4.3: 0x100 followed by 4 "appbits"; we send them as 0
_ONE_BYTE_MAX_ID = 14  # 15 is reserved: it ends one-byte parsing
_ONE_BYTE_MAX_LEN = 16
_TWO_BYTE_MAX_LEN = 255


class Form(enum.Enum):
    ONE_BYTE = "one-byte"
    TWO_BYTE = "two-byte"


class MalformedExtensions(ValueError):
    """The extension block does not parse (an element runs past its end, an unknown profile)."""


def elements(profile: int, block: bytes | bytearray | memoryview) -> Iterator[tuple[int, bytes]]:
    """The (id, value) elements of an extension block; raises ``MalformedExtensions``.

    One-byte form stops at ID 15, as RFC 8285 asks; zero bytes are padding in both forms.
    """
    n = len(block)
    pos = 0
    if profile == ONE_BYTE_PROFILE:
        while pos < n:
            head = block[pos]
            if head == 0:
                pos += 1
                continue
            ext_id, length = head >> 4, (head & 0x0F) + 1
            if ext_id == 15:
                return
            if ext_id == 0:
                raise MalformedExtensions("one-byte element with ID 0 and a length")
            if pos + 1 + length > n:
                raise MalformedExtensions(f"one-byte element {ext_id} runs past the block")
            yield ext_id, bytes(block[pos + 1 : pos + 1 + length])
            pos += 1 + length
    elif profile >> 4 == TWO_BYTE_PROFILE >> 4:
        while pos < n:
            if block[pos] == 0:
                pos += 1
                continue
            if pos + 2 > n:
                raise MalformedExtensions("two-byte element header runs past the block")
            ext_id, length = block[pos], block[pos + 1]
            if pos + 2 + length > n:
                raise MalformedExtensions(f"two-byte element {ext_id} runs past the block")
            yield ext_id, bytes(block[pos + 2 : pos + 2 + length])
            pos += 2 + length
    else:
        raise MalformedExtensions(f"unknown extension profile 0x{profile:04x}")


_PROFILE_LENGTH = struct.Struct("!HH")


@dataclass
class ExtensionRewriter:
    """Rewrites the extension block of RTP packets from one ID map to another.

    ``incoming`` maps the IDs packets arrive with to URIs; ``outgoing`` maps
    URIs to the IDs the receiver negotiated. ``two_byte`` says whether the
    receiver accepts the two-byte form (SDP ``a=extmap-allow-mixed``); without
    it an element that does not fit the one-byte form is dropped. ``replace``
    gives the value an element of a URI carries to the receiver whatever the
    sender put there: the MID must name the receiving leg's own m-line, which
    the sender cannot know. ``dropped`` may be a counter dict shared with the
    owner, so drops show up with its other counters.
    """

    incoming: Mapping[int, str]
    outgoing: Mapping[str, int]
    two_byte: bool = False
    replace: Mapping[str, bytes] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count, elements and blocks
    _table: dict[int, tuple[int, Callable[[bytes], bool] | None, bytes | None]] = field(init=False, repr=False)
    # In ID -> (out ID, the one valid length or 0, value rule, replacement) for elements a one-byte
    # block can keep in place (same length in and out).
    _in_place: dict[int, tuple[int, int, Callable[[bytes], bool] | None, bytes | None]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for uri, out_id in self.outgoing.items():
            if not 1 <= out_id <= 255:
                raise ValueError(f"extension ID {out_id} for {uri} is outside 1..255")
        for uri, value in self.replace.items():
            # A malformed value would make every receiver drop (or choke on) the packet.
            rule = _VALUE_RULES.get(uri)
            if rule is not None and not rule(value):
                raise ValueError(f"replacement value {value!r} is not a well-formed {uri} value")
        self._table = {
            in_id: (self.outgoing[uri], _VALUE_RULES.get(uri), self.replace.get(uri))
            for in_id, uri in self.incoming.items()
            if uri in self.outgoing
        }
        self._in_place = {}
        for in_id, (out_id, rule, replacement) in self._table.items():
            if not (1 <= in_id <= _ONE_BYTE_MAX_ID and out_id <= _ONE_BYTE_MAX_ID):
                continue
            if replacement is not None and not 1 <= len(replacement) <= _ONE_BYTE_MAX_LEN:
                continue
            single = isinstance(rule, _Length) and len(rule.allowed) == 1
            need = rule.allowed[0] if single and isinstance(rule, _Length) else 0
            self._in_place[in_id] = (out_id, need, None if single else rule, replacement)

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def rewrite(self, packet: bytes | bytearray | memoryview) -> bytearray | None:
        """The packet with its extensions in the receiver's terms, or None if it is not RTP.

        A block that does not parse is removed whole (the media still goes
        through); so are elements the receiver did not negotiate or whose
        value is malformed. Without extensions left, the X bit is cleared.
        """
        n = len(packet)
        if n < 12 or packet[0] & 0xC0 != 0x80:
            return None
        start = 12 + 4 * (packet[0] & 0x0F)
        if n < start:
            return None
        extended = packet[0] & 0x10
        profile = words = 0
        if extended:
            if n < start + 4:
                return None
            profile, words = _PROFILE_LENGTH.unpack_from(packet, start)
        end = start + 4 + 4 * words if extended else start
        if n < end or (packet[0] & 0x20 and not 0 < packet[-1] <= n - end):
            return None  # truncated, or a padding count the receiver would refuse
        if not extended:
            return bytearray(packet)
        if profile == ONE_BYTE_PROFILE and self._in_place:
            out = self._rewrite_in_place(packet, start + 4, end)
            if out is not None:
                return out
        kept: list[tuple[int, bytes]] = []
        try:
            for in_id, value in elements(profile, memoryview(packet)[start + 4 : end]):
                entry = self._table.get(in_id)
                if entry is None:
                    self._drop("extension not negotiated")
                    continue
                out_id, valid, replacement = entry
                if replacement is not None:
                    value = replacement
                elif valid is not None and not valid(value):
                    self._drop("malformed extension value")
                    continue
                kept.append((out_id, value))
        except MalformedExtensions:
            self._drop("malformed extension block")
            kept = []
        block = self._block(kept)
        out = bytearray(packet[:start])
        if block:
            out += block
        else:
            out[0] &= ~0x10 & 0xFF
        out += packet[end:]
        return out

    def _rewrite_in_place(self, packet: bytes | bytearray | memoryview, pos: int, end: int) -> bytearray | None:
        """The common case, without rebuilding the block: a one-byte block whose every element
        is negotiated on both sides and well-formed, and whose replacement (the MID) is as long as
        what it replaces. Only IDs (and replaced values) change, lengths and places stay, so the
        copy is the result. None: take the long way.
        """
        table = self._in_place
        out = bytearray(packet)
        seen = False
        while pos < end:
            head = out[pos]
            if head == 0:
                pos += 1  # padding
                continue
            entry = table.get(head >> 4)
            length = (head & 0x0F) + 1
            if entry is None or pos + 1 + length > end:
                return None
            out_id, need, valid, replacement = entry
            if replacement is not None:
                if len(replacement) != length:
                    return None
                out[pos + 1 : pos + 1 + length] = replacement
            elif need:
                if need != length:
                    return None
            elif valid is not None and not valid(bytes(out[pos + 1 : pos + 1 + length])):
                return None
            out[pos] = (out_id << 4) | (head & 0x0F)
            pos += 1 + length
            seen = True
        return out if seen else None  # padding alone: the long way removes the block

    def _block(self, kept: list[tuple[int, bytes]]) -> bytes:
        """Profile, length and elements, padded to 32 bits; b"" when nothing is kept."""
        if any(len(v) > _TWO_BYTE_MAX_LEN for _, v in kept):
            # Fits neither form; only a ``replace`` value can be this long. Raising here
            # would reach the transport loop of the leg whose packet is being forwarded.
            fits = [(i, v) for i, v in kept if len(v) <= _TWO_BYTE_MAX_LEN]
            for _ in range(len(kept) - len(fits)):
                self._drop("extension value longer than 255 bytes")
            kept = fits
        one_byte = all(ext_id <= _ONE_BYTE_MAX_ID and 1 <= len(v) <= _ONE_BYTE_MAX_LEN for ext_id, v in kept)
        if not one_byte and not self.two_byte:
            fits = [(i, v) for i, v in kept if i <= _ONE_BYTE_MAX_ID and 1 <= len(v) <= _ONE_BYTE_MAX_LEN]
            for _ in range(len(kept) - len(fits)):
                self._drop("extension needs the two-byte form the receiver did not allow")
            kept, one_byte = fits, True
        if not kept:
            return b""
        if one_byte:
            body = b"".join(bytes(((i << 4) | (len(v) - 1),)) + v for i, v in kept)
            profile = ONE_BYTE_PROFILE
        else:
            body = b"".join(bytes((i, len(v))) + v for i, v in kept)
            profile = TWO_BYTE_PROFILE
        body += b"\0" * (-len(body) % 4)
        return _PROFILE_LENGTH.pack(profile, len(body) // 4) + body
