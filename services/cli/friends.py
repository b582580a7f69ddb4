"""``duet friends``: list or remove a user's friends (ListFriends, RemoveFriend)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime

from duet.services.cli.call import DEFAULT_SECRETS, user_and_token
from duet.services.client import DuetClientError, FriendInfo, FriendsDirectory

HELP = f"""\
List your friends and who is online, or remove one. Friends are made after a
call, when both people ask (`duet call --add-friend`, or the web client's
"Add friend"); call one with `duet call --friend USER_ID`.

As `duet call`: --token gives the user's token, else one is minted for
--user-id from the local cluster's secrets ({DEFAULT_SECRETS}).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matchmaker", default="127.0.0.1:50052", help="matchmaker address (default: %(default)s)")
    parser.add_argument("--user-id", default=None, help="whose friends (default: the --token's user)")
    parser.add_argument("--token", default=None, help="the user's token (default: mint one locally)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="your friends, online ones first")
    remove = sub.add_parser("remove", help="unfriend someone")
    remove.add_argument("friend", metavar="USER_ID")


def format_friends(friends: list[FriendInfo]) -> str:
    if not friends:
        return "no friends yet: after a call, both of you add the other (duet call --add-friend)"
    lines = [f"  {'':2}{'user id':<24}{'name':<24}{'status':<10}friends since"]
    for f in friends:
        status = "in a call" if f.busy else "online" if f.online else "offline"
        dot = "●" if f.online else "○"
        since = datetime.fromtimestamp(f.since_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        lines.append(f"  {dot:2}{f.user_id:<24}{f.display_name:<24}{status:<10}{since}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.user_id is None and args.token is None:
        raise SystemExit("duet friends: say whose friends: --user-id ID (or --token)")
    _, token = user_and_token(args.user_id, args.token)

    async def main() -> int:
        async with FriendsDirectory(args.matchmaker, token) as directory:
            try:
                if args.action == "remove":
                    await directory.remove(args.friend)
                    print(f"{args.friend} is no longer your friend")
                    return 0
                friends = await directory.list()
            except DuetClientError as exc:
                print(f"duet friends: {exc}", file=sys.stderr)
                return 1
        print(json.dumps([f.__dict__ for f in friends]) if args.json else format_friends(friends))
        return 0

    return asyncio.run(main())
