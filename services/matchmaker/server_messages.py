"""The core's values as the contract's messages: events -> ServerMessage, call rows -> CallRecord.

One function per message, used by the matchmaker's servicer (``server.py``);
nothing here decides anything.
"""

from __future__ import annotations

from collections.abc import Mapping

from duet.services.matchmaker.events import (
    Blocked,
    CallEnded,
    ClockProbe,
    EdgeAssigned,
    EdgeLost,
    Friend,
    FriendAdded,
    FriendRequested,
    HeartbeatAck,
    IncomingCall,
    LegAnswered,
    Matched,
    PartnerProfile,
    Queued,
    Reported,
    RingEnded,
    Ringing,
    SessionEvent,
    TicketClosed,
)
from duet.services.matchmaker.ports import EdgeInfo
from duet.services.store.records import CallRow, ClockOffset
from duet.v1 import common_pb2, matchmaker_pb2


def edge_ref(edge: EdgeInfo) -> common_pb2.EdgeRef:
    return common_pb2.EdgeRef(
        edge_id=edge.edge_id,
        number=edge.number,
        region=edge.region,
        control_address=edge.control_address,
        backbone_address=edge.backbone_address,
        media_host=edge.media_host,
        state=f"EDGE_STATE_{edge.state.name}",  # protobuf takes an enum value by name
    )


def stage_times(stages: Mapping[str, float]) -> common_pb2.StageTimes:
    """Stage dict (as stored) -> StageTimes; unknown keys are ignored."""
    fields = common_pb2.StageTimes.DESCRIPTOR.fields_by_name
    return common_pb2.StageTimes(**{k: float(v) for k, v in stages.items() if k in fields})


def friend_message(friend: Friend) -> matchmaker_pb2.Friend:
    return matchmaker_pb2.Friend(
        user_id=friend.user_id,
        display_name=friend.display_name,
        online=friend.online,
        busy=friend.busy,
        since=friend.since,
    )


def profile_message(profile: PartnerProfile) -> matchmaker_pb2.PartnerProfile:
    return matchmaker_pb2.PartnerProfile(
        display_name=profile.display_name,
        region=profile.region,
        shared_interests=profile.shared_interests,
        languages=profile.languages,
    )


def server_message(event: SessionEvent) -> matchmaker_pb2.ServerMessage:
    match event:
        case EdgeAssigned():
            return matchmaker_pb2.ServerMessage(
                edge_assigned=matchmaker_pb2.EdgeAssigned(
                    session_id=event.session_id,
                    edge=edge_ref(event.edge),
                    reason=event.reason,
                    edge_assigned=event.assigned_at,
                )
            )
        case LegAnswered():
            return matchmaker_pb2.ServerMessage(
                answer=matchmaker_pb2.LegAnswer(leg_id=event.leg_id, sdp=event.answer_sdp)
            )
        case Queued():
            return matchmaker_pb2.ServerMessage(
                queued=matchmaker_pb2.Queued(
                    ticket_id=event.ticket_id,
                    queued=event.queued_at,
                    position=event.position,
                    estimated_wait_ms=event.estimated_wait_ms,
                    expires=event.expires_at,
                )
            )
        case Matched():
            partner = event.partner
            return matchmaker_pb2.ServerMessage(
                matched=matchmaker_pb2.Matched(
                    call_id=event.call_id,
                    partner_display_name=event.partner_display_name,
                    partner_region=event.partner_region,
                    route=event.route,
                    route_rtt_ms=event.route_rtt_ms,
                    stages=stage_times(event.stages),
                    partner=None if partner is None else profile_message(partner),
                    predicted_connect_ms=event.predicted_connect_ms,
                    friend_call=event.friend_call,
                )
            )
        case TicketClosed():
            return matchmaker_pb2.ServerMessage(
                ticket_closed=matchmaker_pb2.TicketClosed(ticket_id=event.ticket_id, reason=event.reason)
            )
        case HeartbeatAck():
            return matchmaker_pb2.ServerMessage(
                heartbeat_ack=matchmaker_pb2.HeartbeatAck(
                    server_time=event.server_time,
                    ticket_id=event.ticket_id,
                    position=event.position,
                    estimated_wait_ms=event.estimated_wait_ms,
                )
            )
        case Blocked():
            return matchmaker_pb2.ServerMessage(blocked=matchmaker_pb2.Blocked(call_id=event.call_id))
        case Reported():
            return matchmaker_pb2.ServerMessage(reported=matchmaker_pb2.Reported(call_id=event.call_id))
        case CallEnded():
            return matchmaker_pb2.ServerMessage(
                call_ended=matchmaker_pb2.CallEnded(call_id=event.call_id, reason=event.reason)
            )
        case FriendRequested():
            return matchmaker_pb2.ServerMessage(
                friend_requested=matchmaker_pb2.FriendRequested(call_id=event.call_id, friends=event.friends)
            )
        case FriendAdded():
            return matchmaker_pb2.ServerMessage(
                friend_added=matchmaker_pb2.FriendAdded(friend=friend_message(event.friend), call_id=event.call_id)
            )
        case Ringing():
            return matchmaker_pb2.ServerMessage(
                ringing=matchmaker_pb2.Ringing(
                    request_id=event.request_id, friend=friend_message(event.friend), expires=event.expires_at
                )
            )
        case IncomingCall():
            return matchmaker_pb2.ServerMessage(
                incoming_call=matchmaker_pb2.IncomingCall(
                    request_id=event.request_id,
                    caller=profile_message(event.caller),
                    caller_user_id=event.caller_user_id,
                    expires=event.expires_at,
                )
            )
        case RingEnded():
            return matchmaker_pb2.ServerMessage(
                ring_ended=matchmaker_pb2.RingEnded(request_id=event.request_id, reason=event.reason)
            )
        case EdgeLost():
            return matchmaker_pb2.ServerMessage(
                edge_lost=matchmaker_pb2.EdgeLost(edge_id=event.edge_id, reason=event.reason)
            )
        case ClockProbe():
            return matchmaker_pb2.ServerMessage(
                clock_probe=matchmaker_pb2.ClockProbe(probe_id=event.probe_id, server_send=event.server_send)
            )


def _call_side(
    user: str, edge: str, leg: str, stages: dict[str, float], clock: ClockOffset | None
) -> matchmaker_pb2.CallSide:
    first = stages.get("first_frame", 0.0)
    return matchmaker_pb2.CallSide(
        clock_synced=clock is not None,
        clock_offset_ms=clock.offset_ms if clock else 0.0,
        clock_uncertainty_ms=clock.uncertainty_ms if clock else 0.0,
        user_id=user,
        edge_id=edge,
        leg_id=leg,
        stages=stage_times(stages),
        connect_ms=first - stages["matched"] if first and stages.get("matched") else 0.0,
        total_ms=first - stages["queued"] if first and stages.get("queued") else 0.0,
    )


def call_record(row: CallRow) -> matchmaker_pb2.CallRecord:
    return matchmaker_pb2.CallRecord(
        call_id=row.call_id,
        a=_call_side(row.user_a, row.edge_a, row.leg_a, row.stages_a, row.clock_a),
        b=_call_side(row.user_b, row.edge_b, row.leg_b, row.stages_b, row.clock_b),
        route=row.route,
        route_rtt_ms=row.route_rtt_ms,
        state=row.state,
        end_reason=row.end_reason or "",
        created_at=(row.created_at or 0.0) * 1000,
        ended_at=(row.ended_at or 0.0) * 1000,
        kind=row.kind,
        duration_ms=row.duration_ms or 0.0,
    )
