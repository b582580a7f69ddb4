"""``duet call``: one simulated client places a call and prints its stage breakdown."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from pathlib import Path

import av
import grpc
from aiortc.contrib.media import MediaPlayer

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.secrets import SECRETS_ENV, SECRETS_FILE_NAME, find_secrets
from duet.services.auth.sources import DevUserTokens, StaticToken, TokenSource
from duet.services.auth.tokens import TokenError, unverified_user_id
from duet.services.cli.log_setup import configure_logging
from duet.services.client import STAGES, CallResult, DuetClient, DuetClientError
from duet.services.client.media import VIDEO_CODECS
from duet.services.client.preferences import SCOPES, MatchPreferences
from duet.services.devkit.synthetic_media import synthetic_client
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

HELP = """\
Open a Session with the matchmaker as one simulated user (synthetic camera and
microphone, or a media file with --media), warm up a WebRTC leg to the assigned
edge, wait for a partner (`duet up` keeps a greeter bot waiting), and print when
each stage of the connect path happened, then leave.

Friends: --add-friend asks to be friends with the partner after the call
(both must ask); --friend USER_ID calls a friend instead of waiting for a
stranger; --answer waits for a friend's call and accepts it. `duet friends`
lists and removes friends.

The matchmaker wants a user token: --token gives one; without it, one is
minted for the user id from the local cluster's secrets (.duet/auth-secrets.json,
or $DUET_AUTH_SECRETS), so in the folder where `duet up` runs no step is needed.
"""

DEFAULT_SECRETS = Path(".duet") / SECRETS_FILE_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--matchmaker",
        default="127.0.0.1:50052",
        help="matchmaker address, or several replicas separated by commas (default: %(default)s)",
    )
    parser.add_argument("--user-id", default=None, help="user id (default: the --token's user, else a random guest id)")
    parser.add_argument(
        "--token",
        default=None,
        help=f"the user's token (default: mint one from {DEFAULT_SECRETS} or ${SECRETS_ENV}, the local cluster's secrets)",
    )
    parser.add_argument("--name", default=None, help="display name shown to the partner (default: the user id)")
    parser.add_argument(
        "--client-ip",
        default=None,
        help="address to present as x-forwarded-for (honoured only by a matchmaker that trusts it, as the local cluster does)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for a partner (default: %(default)s)"
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=2.0,
        help="seconds to stay in the call after the first frame, so the partner sees you too (default: %(default)s)",
    )
    parser.add_argument(
        "--media",
        default=None,
        metavar="FILE",
        help="send this file's video and audio (any file FFmpeg reads, played in a loop) instead of the synthetic camera and microphone",
    )
    parser.add_argument(
        "--video-codecs",
        default="VP8,H264",
        type=_video_codecs,
        help=(
            "video codecs to offer, comma-separated, of VP8 and H264 (default: %(default)s); "
            "H264 alone sends H.264 and meets only partners that can send it"
        ),
    )
    parser.add_argument(
        "--language",
        dest="languages",
        action="append",
        default=[],
        metavar="CODE",
        help="a language you speak (ISO 639-1, e.g. en); repeat or comma-separate for several; "
        "you meet people who share one",
    )
    parser.add_argument(
        "--interests", default="", metavar="LIST", help="comma-separated interests, e.g. music,film (shared ones first)"
    )
    parser.add_argument(
        "--scope",
        choices=sorted(SCOPES),
        default="anywhere",
        help="near: your region or close by (widened after a while); anywhere (default)",
    )
    parser.add_argument("--gender", default="", help="your gender: female, male or nonbinary (default: unstated)")
    parser.add_argument("--want-genders", default="", metavar="LIST", help="comma-separated genders you want to meet")
    parser.add_argument("--age-band", default="", help="your age band: 18-24, 25-34, 35-44, 45-54 or 55+")
    parser.add_argument(
        "--want-age-bands", default="", metavar="LIST", help="comma-separated age bands you want to meet"
    )
    friends = parser.add_mutually_exclusive_group()
    friends.add_argument(
        "--friend", default=None, metavar="USER_ID", help="call this friend directly instead of meeting a stranger"
    )
    friends.add_argument(
        "--answer", action="store_true", help="wait (up to --timeout) for a friend's call and accept it"
    )
    parser.add_argument(
        "--add-friend",
        action="store_true",
        help="after the call, ask to be friends with the partner (you are friends once they ask too)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--log-level", default="WARNING")


def _video_codecs(value: str) -> tuple[str, ...]:
    codecs = tuple(c.strip().upper() for c in value.split(",") if c.strip())
    if not codecs or any(c not in VIDEO_CODECS for c in codecs):
        raise argparse.ArgumentTypeError(f"'{value}': give one or more of {', '.join(VIDEO_CODECS)}, e.g. VP8,H264")
    return codecs


def _list(value: str | list[str]) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    return tuple(part.strip() for item in items for part in item.split(",") if part.strip())


def preferences_from_args(args: argparse.Namespace) -> MatchPreferences | None:
    """The user's preferences from the command line; None when none was given."""
    prefs = MatchPreferences(
        languages=_list(args.languages),
        interests=_list(args.interests),
        gender=args.gender.strip(),
        want_genders=_list(args.want_genders),
        age_band=args.age_band.strip(),
        want_age_bands=_list(args.want_age_bands),
        scope=args.scope,
    )
    return None if prefs == MatchPreferences() else prefs


def format_result(result: CallResult) -> str:
    lines = [
        f"call {result.call_id} with {result.partner_display_name} ({result.partner_region}) via {' > '.join(result.route)}",
        f"  {'stage':<22}{'epoch ms':>16}{'+ms from open':>15}",
    ]
    origin = result.stages.get("session_open", 0.0)
    for name in STAGES:
        value = result.stages.get(name, 0.0)
        rel = f"{value - origin:.1f}" if value and origin else "-"
        lines.append(f"  {name:<22}{value:>16.1f}{rel:>15}" if value else f"  {name:<22}{'-':>16}{'-':>15}")
    connect = f"{result.connect_ms:.1f}" if result.connect_ms is not None else "not connected"
    total = f"{result.total_ms:.1f}" if result.total_ms is not None else "-"
    lines.append(f"  connect_ms (first_frame - matched) = {connect}   total_ms (first_frame - queued) = {total}")
    return "\n".join(lines)


def format_profile(matched: matchmaker_pb2.Matched) -> str:
    partner = matched.partner
    shared = ", ".join(partner.shared_interests) or "none"
    languages = ", ".join(partner.languages) or "not given"
    predicted = f"{matched.predicted_connect_ms:.0f} ms" if matched.predicted_connect_ms else "-"
    return f"  shared interests: {shared}; they speak: {languages}; predicted connect: {predicted}"


def user_and_token(user_id: str | None, token: str | None) -> tuple[str, TokenSource]:
    """Who to be and the token to present: the given token (and its user), or dev tokens minted locally."""
    if token is not None:
        try:
            named = unverified_user_id(token)
        except TokenError as exc:
            raise SystemExit(f"duet call: --token is not a user token: {exc}") from None
        if user_id is not None and user_id != named:
            raise SystemExit(f"duet call: --token is for user {named}, not {user_id}")
        return named, StaticToken(token)
    user_id = user_id or f"guest-{secrets.token_hex(3)}"
    found = find_secrets(default=DEFAULT_SECRETS)
    if found is None or found.user is None:
        raise SystemExit(
            f"duet call: no token: give --token (a user token), or run where `duet up` keeps {DEFAULT_SECRETS} "
            f"(or set ${SECRETS_ENV}) so one can be minted"
        )
    try:
        return user_id, DevUserTokens(found.user, user_id)
    except ValueError as exc:
        raise SystemExit(f"duet call: {exc}") from None


async def _add_edge_stages(matchmaker: str, user_id: str, token: TokenSource, result: CallResult) -> None:
    """The edge's first_packet_at_edge reaches the call record, not the client: read it back."""
    async with grpc.aio.insecure_channel(matchmaker) as channel:
        try:
            record = await matchmaker_pb2_grpc.MatchmakerStub(channel).GetCall(
                matchmaker_pb2.GetCallRequest(call_id=result.call_id),
                timeout=5,
                metadata=bearer_metadata(await token()),
            )
        except grpc.aio.AioRpcError:
            return
    side = record.a if record.a.user_id == user_id else record.b
    if side.stages.first_packet_at_edge:
        result.stages["first_packet_at_edge"] = side.stages.first_packet_at_edge


async def _place(client: DuetClient, args: argparse.Namespace) -> CallResult:
    """The call: a stranger from the pool, a friend we ring, or a friend's call we accept."""
    if args.friend:
        print(f"{client.user_id}: leg to the edge is up; ringing {args.friend} ...", flush=True)
        return await client.call_friend(args.friend)
    if args.answer:
        print(f"{client.user_id}: leg to the edge is up; waiting for a friend's call ...", flush=True)
        incoming = await client.wait_incoming_call()
        print(f"{incoming.caller.display_name} ({incoming.caller_user_id}) is calling; accepting", flush=True)
        result = await client.answer(incoming.request_id)
        assert result is not None  # accepting returns the call
        return result
    print(f"{client.user_id}: leg to the edge is up; waiting for a partner ...", flush=True)
    return await client.find_partner()


async def _add_friend(client: DuetClient, hold: float) -> None:
    """Ask to be friends with the partner; within ``hold`` s they may ask too."""
    if await client.add_friend():
        friend = await client.wait_friend_added(5)
        print(f"you and {friend.display_name} are friends now; call them with --friend {friend.user_id}")
        await asyncio.sleep(hold)
        return
    print("friend request sent; you are friends once they add you too", flush=True)
    try:
        friend = await client.wait_friend_added(hold)
    except DuetClientError:
        return
    print(f"you and {friend.display_name} are friends now; call them with --friend {friend.user_id}")


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    user_id, token = user_and_token(args.user_id, args.token)

    async def main() -> int:
        if args.media:
            try:
                player = MediaPlayer(args.media, loop=True)
            except (av.error.FFmpegError, AssertionError) as exc:  # aiortc asserts a file it can loop
                print(f"cannot play {args.media}: {exc or 'not a seekable file'}")
                return 2
            # Any partner, any media: the default first-frame rule.
            client = DuetClient(
                args.matchmaker,
                user_id,
                args.name or user_id,
                video=player.video,
                audio=player.audio,
                client_ip=args.client_ip,
                video_codecs=args.video_codecs,
                token=token,
                preferences=preferences_from_args(args),
            )
        else:
            client = synthetic_client(
                args.matchmaker,
                user_id,
                args.name or user_id,
                tag=secrets.randbelow(60000) + 1,
                client_ip=args.client_ip,
                video_codecs=args.video_codecs,
                token=token,
                preferences=preferences_from_args(args),
            )
        try:
            await client.connect()
            result = await asyncio.wait_for(_place(client, args), args.timeout)
            if args.add_friend:
                await _add_friend(client, args.hold)
            else:
                await asyncio.sleep(args.hold)
            await _add_edge_stages(client.matchmaker_address, user_id, token, result)
        except TimeoutError:
            print(f"no {'answer' if args.friend else 'call' if args.answer else 'partner'} within {args.timeout:.0f} s")
            return 1
        except DuetClientError as exc:  # refused (a token, preferences, the rate limit), expired, or gone: in words
            print(f"duet call: {exc}", file=sys.stderr)
            return 1
        finally:
            await client.leave()
        print(json.dumps(result.__dict__, default=str) if args.json else format_result(result))
        if not args.json and client.last_match is not None:
            print(format_profile(client.last_match))
        return 0 if result.connect_ms is not None else 1

    return asyncio.run(main())
