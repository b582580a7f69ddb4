"""The Duet client SDK: one user's Session stream to the matchmaker and WebRTC leg to an edge.

    stages       the connect-path stage names, CallResult, stage merging
    inbox        the session's events, SessionInbox, DuetClientError
    media        the leg's RTCPeerConnection with the caller's tracks; the partner's video watch
    first_frame  which decoded frame is the new partner's first (FirstFrameRule, AnyMediaRule)
    preferences  MatchPreferences: who the user is and whom they want to meet
    session      DuetClient: connect / find_partner / next / block / report / leave; friends:
                 add_friend / call_friend / wait_incoming_call / answer / cancel_call / hang_up
    friends      FriendsDirectory: list and remove friends without a Session

A client with the caller's media (any aiortc tracks)::

    player = MediaPlayer("me.webm")
    async with DuetClient(matchmaker, "ana", "Ana", video=player.video, audio=player.audio) as client:
        result = await client.find_partner()

``duet.services.devkit.synthetic_media.synthetic_client`` builds one with the
synthetic camera and microphone, for tests and load generation.
"""

from duet.services.client.first_frame import AnyMediaRule, FirstFrameRule, NewPartner
from duet.services.client.friends import FriendInfo, FriendsDirectory
from duet.services.client.inbox import (
    DuetClientError,
    Event,
    LegState,
    PartnerFrame,
    SessionInbox,
    StreamEnded,
    event_kind,
)
from duet.services.client.media import LEG_CODECS, MediaLeg
from duet.services.client.preferences import MatchPreferences
from duet.services.client.session import DuetClient
from duet.services.client.stages import (
    CLIENT_STAGES,
    SERVER_STAGES,
    STAGES,
    CallResult,
    build_call_result,
    client_report_stages,
    merge_stages,
    now_ms,
    stages_from_proto,
    stages_to_proto,
)

__all__ = [
    "CLIENT_STAGES",
    "LEG_CODECS",
    "SERVER_STAGES",
    "STAGES",
    "AnyMediaRule",
    "CallResult",
    "DuetClient",
    "DuetClientError",
    "Event",
    "FirstFrameRule",
    "FriendInfo",
    "FriendsDirectory",
    "LegState",
    "MatchPreferences",
    "MediaLeg",
    "NewPartner",
    "PartnerFrame",
    "SessionInbox",
    "StreamEnded",
    "build_call_result",
    "client_report_stages",
    "event_kind",
    "merge_stages",
    "now_ms",
    "stages_from_proto",
    "stages_to_proto",
]
