// The Duet web client: one Session with the matchmaker (through the gateway's
// WebSocket at /session, each frame one ClientMessage or ServerMessage in
// protobuf's JSON mapping) and one warm WebRTC leg to the assigned edge.
// The protocol is protos/duet/v1/matchmaker.proto, step by step:
//   Hello -> EdgeAssigned -> LegOffer (complete offer, no trickle ICE) -> LegAnswer
//   -> leg connected -> FindPartner -> Queued -> Matched -> partner's first frame
//   -> ConnectReport; Next and Leave as the person presses them.
//   EdgeLost (the edge died): drop the leg; EdgeAssigned with a new edge follows, and the
//   page offers a new leg there and goes back to looking for someone.
// Friends (docs/friends.md): AddFriend{callId} after a call (FriendRequested, FriendAdded once
// both asked); the friends list with who is online from GET friends (ListFriends through the
// gateway); CallFriend{userId} -> Ringing -> Matched (friendCall) or RingEnded; a friend's
// IncomingCall is answered with AnswerCall{requestId, accept}; CancelCall stops ringing.
//
// Beside it: signin.js (the guest sign-in and its token), words.js (errors in words),
// breakdown.js (the connect-time table), friends.js (the friends panel), media.js (WebRTC details).
//
// Test hook (read-only), for the browser tests and anyone curious:
//   window.duetState.state        "idle" | "starting" | "connecting" | "waiting" | "matched"
//                                 | "in_call" | "ended" | "leaving" | "error"
//   window.duetState.callId       the current (last matched) call's id, or ""
//   window.duetState.partner      {name, region} of the current partner, or null
//   window.duetState.lastBreakdown  the last call with a first frame (or a give-up):
//                                 {callId, partner, region, route, stages: {name: epoch ms},
//                                  connectMs, totalMs, connected, clock}; clock, once the call record
//                                 is read back: {synced, offsetMs, uncertaintyMs}, this browser's clock
//                                 minus the matchmaker's, from the clock probes it answered
//   window.duetState.breakdowns   every such call so far, oldest first
//   window.duetState.error        the error shown to the person, or ""
//   window.duetState.edge         the assigned edge {edgeId, region}, or null
//   window.duetState.friends      the last friends list: [{userId, displayName, online, busy}]
//   window.duetState.incoming     a friend's call ringing here {requestId, callerUserId, callerName}, or null
//   window.duetState.ringing      the friend this page is ringing {requestId, userId, name}, or null
//   window.duetState.friendNotice the last friends message shown (request sent, friends now, declined ...)
//   window.duetState.friendCall   the current call is a friend call
//   window.duetState.edgesLost    ids of the edges this session lost (EdgeLost), oldest first
//   window.duetState.mediaStats() a Promise of the leg's inbound figures (getStats' inbound-rtp,
//                                 0 or "" until the kind's first packet; null before a leg):
//                                 {video: {framesDecoded, framesReceived, framesDropped, keyFramesDecoded,
//                                          freezeCount, totalFreezesDuration (s), pliCount, nackCount,
//                                          codec (mime type, e.g. "video/VP8"), decoderImplementation},
//                                  audio: {totalSamplesReceived, concealedSamples, totalAudioEnergy,
//                                          totalSamplesDuration (s), audioLevel (0..1), codec}}

import { addHistory, CLIENT_STAGES, fillEdgeStage, fmt, showBreakdown, STAGES } from "./breakdown.js";
import { friendsPanel } from "./friends.js";
import { iceGatheringComplete, inboundStats, loopbackHint, watchFirstFrame } from "./media.js";
import { signIn } from "./signin.js";
import { cameraError, closedError } from "./words.js";

const LEG_TIMEOUT_MS = 10000; // ICE + DTLS with the edge
const FRAME_TIMEOUT_MS = 10000; // Matched -> the partner's first frame

const $ = (id) => document.getElementById(id);
const ui = {
  talk: $("talk"), next: $("next"), leave: $("leave"), name: $("name"),
  languages: $("languages"), interests: $("interests"), near: $("near"),
  regionChoice: $("region-choice"), region: $("region"),
  status: $("status"), error: $("error"), partner: $("partner"),
  local: $("local-video"), remote: $("remote-video"),
  breakdownSection: $("breakdown-section"), breakdownTitle: $("breakdown-title"),
  breakdownBody: document.querySelector("#breakdown tbody"), breakdownSummary: $("breakdown-summary"),
  history: $("history"),
  addFriend: $("add-friend"), friends: $("friends"), friendsEmpty: $("friends-empty"),
  incoming: $("incoming"), incomingText: $("incoming-text"), accept: $("accept"), decline: $("decline"),
  ringing: $("ringing"), ringingText: $("ringing-text"), cancelRing: $("cancel-ring"),
};
const FRIENDS_REFRESH_MS = 4000; // how often the friends list (who is online) is fetched during a session

const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
// Epoch ms with sub-millisecond precision: the unit of every stage.
const nowMs = () => performance.timeOrigin + performance.now();
const view = {
  state: "idle", error: "", breakdowns: [], friends: [], incoming: null, ringing: null, friendNotice: "",
};

// The person's matching preferences as a Preferences message (protobuf JSON), or undefined for none.
// Read at every search, so they may be changed between calls; the matchmaker checks them.
function preferences() {
  const list = (text) => text.split(",").map((item) => item.trim()).filter(Boolean);
  const prefs = {};
  const languages = list(ui.languages.value.toLowerCase());
  const interests = list(ui.interests.value);
  if (languages.length) prefs.languages = languages;
  if (interests.length) prefs.interests = interests;
  if (ui.near.checked) prefs.scope = "SCOPE_NEAR";
  return Object.keys(prefs).length ? prefs : undefined;
}
let session = null; // the live Session, or null
const { friendNotice, showFriends, refreshFriends, showIncoming, showRinging } = friendsPanel({
  ui, view, getSession: () => session, showError,
});

// -- what the person sees -------------------------------------------------------

function setState(state, text) {
  view.state = state;
  ui.status.textContent = text;
  const live = session !== null && !["leaving"].includes(state);
  ui.talk.disabled = !(["idle", "error", "ended"].includes(state));
  ui.next.disabled = !(live && ["waiting", "matched", "in_call", "ended"].includes(state));
  ui.leave.disabled = !live;
  ui.name.disabled = session !== null;
  ui.region.disabled = session !== null;
  ui.addFriend.disabled = !(live && session.call && ["matched", "in_call", "ended", "waiting"].includes(state));
}

function showError(text) {
  view.error = text;
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

function showPartner(call) {
  ui.partner.hidden = !call;
  ui.partner.textContent = call ? `${call.partner} · ${call.region}` : "";
}

// -- the session ------------------------------------------------------------------

class Session {
  constructor(stream, region, displayName) {
    this.stream = stream;
    this.region = region;
    this.displayName = displayName;
    this.stages = {}; // this page's own stages for the session (session_open, edge_assigned, leg_connected)
    this.edge = null;
    this.pc = null;
    this.ws = null;
    this.opened = false; // the WebSocket opened
    this.closed = null; // the gateway's closed frame
    this.ended = false;
    this.inPool = false;
    this.call = null; // the current call: {callId, partner, region, route, server, queued, matchedAt, firstFrame, ...}
    this.queuedAt = 0; // Queued.queued (matchmaker clock) of the current ticket
    this.previousVideo = false; // the leg has shown a partner's video before (a switch, not a fresh leg)
    this.timers = new Set();
    this.work = Promise.resolve(); // server messages are handled one after another
    this.edgesLost = []; // edge ids the matchmaker said died under this session
  }

  async start() {
    setState("connecting", "Connecting to Duet …");
    let signedIn;
    try {
      signedIn = await signIn();
    } catch (err) {
      return this.fail(err.message);
    }
    this.userId = signedIn.userId;
    this.stages.session_open = nowMs();
    const url = new URL("session", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (this.region) url.searchParams.set("region", this.region);
    // A browser's WebSocket cannot carry an Authorization header: the gateway takes the token from here.
    url.searchParams.set("token", signedIn.token);
    this.ws = new WebSocket(url);
    this.ws.onopen = () => {
      this.opened = true;
      this.send({
        hello: { userId: this.userId, displayName: this.displayName, sessionOpen: this.stages.session_open, clockProbes: true },
      });
    };
    this.ws.onmessage = (event) => {
      const received = nowMs();
      // Clock probes are answered here, at once, not behind the queued work: a late answer widens the
      // round trip and with it the uncertainty of the offset the matchmaker estimates from it.
      if (typeof event.data === "string" && event.data.startsWith('{"clockProbe"')) {
        const probe = JSON.parse(event.data).clockProbe;
        this.send({ clockEcho: { probeId: probe.probeId || "0", clientReceive: received, clientSend: nowMs() } });
        this.clockProbesAnswered = (this.clockProbesAnswered || 0) + 1;
        return;
      }
      this.work = this.work.then(() => this.onFrame(event.data)).catch((err) => this.fail(`Unexpected error: ${err.message || err}`));
    };
    this.ws.onclose = (event) => { this.work = this.work.then(() => this.onSocketClosed(event)); };
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  after(ms, fn) {
    const id = setTimeout(() => { this.timers.delete(id); fn(); }, ms);
    this.timers.add(id);
    return id;
  }

  async onFrame(text) {
    if (this.ended) return;
    const message = JSON.parse(text);
    if (message.closed) return this.onClosed(message.closed.code, message.closed.message || "");
    if (message.edgeAssigned) return this.onEdgeAssigned(message.edgeAssigned);
    if (message.answer) return this.onAnswer(message.answer);
    if (message.queued) return this.onQueued(message.queued);
    if (message.matched) return this.onMatched(message.matched);
    if (message.callEnded) return this.onCallEnded(message.callEnded);
    if (message.ticketClosed) return this.onTicketClosed(message.ticketClosed);
    if (message.error) return this.onRefused(message.error);
    if (message.friendRequested) return this.onFriendRequested(message.friendRequested);
    if (message.friendAdded) return this.onFriendAdded(message.friendAdded);
    if (message.ringing) return this.onRinging(message.ringing);
    if (message.incomingCall) return this.onIncomingCall(message.incomingCall);
    if (message.ringEnded) return this.onRingEnded(message.ringEnded);
    if (message.edgeLost) return this.onEdgeLost(message.edgeLost);
  }

  addFriend() {
    const call = this.call;
    if (!call) return;
    showError("");
    this.send({ addFriend: { callId: call.callId } });
  }

  onFriendRequested(requested) {
    const call = this.call;
    const who = call && call.callId === requested.callId ? call.partner : "your partner";
    if (!requested.friends) friendNotice(`Friend request sent to ${who}: you are friends once they add you too.`);
  }

  onFriendAdded(added) {
    const name = added.friend?.displayName || added.friend?.userId || "someone";
    friendNotice(`You and ${name} are friends now.`);
    refreshFriends();
  }

  // Ring a friend: leave the pool (or the call) first; the matchmaker takes the messages in order.
  callFriend(friend) {
    showError("");
    if (this.inPool) this.send({ cancel: {} });
    else if (this.call && !this.call.over) this.send({ hangUp: {} });
    this.send({ callFriend: { userId: friend.userId } });
    showRinging({ requestId: "", userId: friend.userId, name: friend.displayName });
  }

  onRinging(ringing) {
    if (view.ringing) showRinging({ ...view.ringing, requestId: ringing.requestId });
    setState("ended", `Calling ${ringing.friend?.displayName || "your friend"} …`);
  }

  onIncomingCall(incoming) {
    showIncoming({
      requestId: incoming.requestId,
      callerUserId: incoming.callerUserId,
      callerName: incoming.caller?.displayName || incoming.callerUserId,
    });
  }

  answer(accept) {
    const incoming = view.incoming;
    if (!incoming) return;
    this.send({ answerCall: { requestId: incoming.requestId, accept } });
    showIncoming(null);
    if (accept) setState("matched", `Connecting with ${incoming.callerName} …`);
  }

  cancelRinging() {
    if (view.ringing?.requestId) this.send({ cancelCall: { requestId: view.ringing.requestId } });
  }

  onRingEnded(ended) {
    const reason = ended.reason || "";
    if (view.incoming && view.incoming.requestId === ended.requestId) {
      const name = view.incoming.callerName;
      showIncoming(null);
      if (reason !== "declined") friendNotice(`The call from ${name} ended: ${reason}.`);
    }
    if (view.ringing && view.ringing.requestId === ended.requestId) {
      const name = view.ringing.name;
      showRinging(null);
      const words = {
        declined: `${name} declined your call.`,
        "no answer": `${name} did not answer.`,
        cancelled: "You stopped calling.",
        "friend went offline": `${name} went offline.`,
      };
      friendNotice(words[reason] || `The call to ${name} ended: ${reason}.`);
    }
    refreshFriends();
  }

  // The edge died: its leg is gone. The call (if any) ends and EdgeAssigned with a new edge
  // follows; the new leg's "connected" puts the person back in the pool (onLegState).
  onEdgeLost(lost) {
    this.edgesLost.push(lost.edgeId);
    if (this.pc) {
      this.pc.onconnectionstatechange = null; // its failure is no news now
      this.pc.ontrack = null;
      this.pc.close();
      this.pc = null;
    }
    this.stages.leg_connected = 0;
    this.answerSdp = "";
    this.previousVideo = false;
    this.inPool = false;
    ui.remote.srcObject = null;
    setState("connecting", `Edge ${lost.edgeId} stopped answering; moving you to another edge …`);
  }

  // The wait ended without a match (expired, cancelled, held for review); the session and leg stay.
  onTicketClosed(closed) {
    this.inPool = false;
    if (closed.reason === "edge_lost") return; // EdgeLost came first: the new leg puts us back in the pool
    if (closed.reason.startsWith("cancelled")) return setState("ended", "Not in a call."); // we asked (or answered a friend)
    showError(`You are no longer waiting: ${closed.reason}. Press “Talk to someone” to try again.`);
    setState("ended", "Not in a call.");
  }

  // A request the matchmaker refused (rate limit, review hold, bad preferences); the session goes on.
  onRefused(error) {
    showError(`${error.message || error.code}`);
    if (error.request === "find_partner" || error.request === "next") {
      this.inPool = false;
      setState("ended", "Not in a call.");
    }
    if (error.request === "call_friend") showRinging(null);
  }

  async onEdgeAssigned(assigned) {
    this.stages.edge_assigned = nowMs();
    this.edge = { edgeId: assigned.edge.edgeId, region: assigned.edge.region || "" };
    setState("connecting", `Connecting to edge ${this.edge.edgeId} (${this.edge.region}) …`);
    this.pc = new RTCPeerConnection({ iceServers: [] }); // host candidates only: the edge is reachable directly
    const [video] = this.stream.getVideoTracks();
    const [audio] = this.stream.getAudioTracks();
    // The browser's own codec list, untouched: the edge keeps what it can forward and puts VP8 first.
    this.pc.addTransceiver(video, { direction: "sendrecv", streams: [this.stream] });
    if (audio) this.pc.addTransceiver(audio, { direction: "sendrecv", streams: [this.stream] });
    else this.pc.addTransceiver("audio", { direction: "recvonly" });
    const remote = new MediaStream();
    this.pc.ontrack = (event) => {
      remote.addTrack(event.track);
      if (ui.remote.srcObject !== remote) ui.remote.srcObject = remote;
      ui.remote.play().catch(() => {}); // a muted autoplay fallback is not needed: Talk was a click
    };
    this.pc.onconnectionstatechange = () => this.onLegState(this.pc.connectionState);
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await iceGatheringComplete(this.pc); // non-trickle: the offer carries every candidate
    this.send({ offer: { sdp: this.pc.localDescription.sdp } });
    const pc = this.pc;
    this.after(LEG_TIMEOUT_MS, () => {
      if (this.pc === pc && !this.stages.leg_connected && !this.ended) {
        this.fail(`The media connection to edge ${this.edge.edgeId} did not come up within ${LEG_TIMEOUT_MS / 1000} s.${loopbackHint(this.answerSdp)}`);
      }
    });
  }

  async onAnswer(answer) {
    this.answerSdp = answer.sdp;
    await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  }

  onLegState(state) {
    if (this.ended) return;
    if (state === "connected" && !this.stages.leg_connected) {
      this.stages.leg_connected = nowMs();
      this.findPartner();
      refreshFriends();
      const poll = () => { refreshFriends(); this.after(FRIENDS_REFRESH_MS, poll); };
      this.after(FRIENDS_REFRESH_MS, poll);
    } else if (state === "failed") {
      this.fail(`The media connection to edge ${this.edge.edgeId} failed.${this.stages.leg_connected ? "" : loopbackHint(this.answerSdp)}`);
    }
  }

  findPartner() {
    showError("");
    this.send({ findPartner: { legConnected: this.stages.leg_connected, preferences: preferences() } });
    setState("waiting", "Looking for someone …");
  }

  next() {
    showError("");
    this.send({ next: { preferences: preferences() } });
    setState("waiting", "Looking for someone new …");
  }

  leave() {
    setState("leaving", "Leaving …");
    this.leaving = true;
    this.send({ leave: {} });
    this.after(3000, () => this.finish("idle", "You left.")); // the gateway closes first, normally
  }

  onQueued(queued) {
    this.queuedAt = queued.queued || 0;
    this.clientQueued = nowMs();
    this.inPool = true;
    if (!this.call || this.call.done) setState("waiting", "Looking for someone …");
  }

  onMatched(matched) {
    this.inPool = false;
    const server = matched.stages || {};
    this.call = {
      callId: matched.callId,
      partner: matched.partnerDisplayName || "someone",
      region: matched.partnerRegion || "",
      route: matched.route || [],
      server,
      queued: server.queued || this.queuedAt || this.clientQueued || 0,
      matchedAt: performance.now(), // when Matched arrived here: frames received before it are the old partner's
      firstFrame: 0,
      done: false,
      friendCall: !!matched.friendCall,
    };
    showRinging(null);
    showPartner(this.call);
    const shared = (matched.partner && matched.partner.sharedInterests) || [];
    const both = shared.length ? `; you both like ${shared.join(", ")}` : "";
    const met = this.call.friendCall ? "Your friend" : "Matched with";
    setState("matched", `${met} ${this.call.partner} (${this.call.region})${both}; waiting for their video …`);
    watchFirstFrame(ui.remote, this, this.call);
    const call = this.call;
    this.after(FRAME_TIMEOUT_MS, () => {
      if (!call.done && this.call === call && !this.ended) {
        this.report(call, false);
        showError(`No video arrived from ${call.partner} within ${FRAME_TIMEOUT_MS / 1000} s. Press “Next” to talk to someone else.`);
      }
    });
  }

  onFirstFrame(call, at) {
    if (call.done || this.call !== call || this.ended) return;
    call.firstFrame = at;
    this.previousVideo = true;
    const result = this.report(call, true);
    setState("in_call", `In a call with ${call.partner} (${call.region}) · connected in ${fmt(result.connectMs)} ms`);
  }

  // ConnectReport, and the breakdown on the page; returns the breakdown.
  report(call, connected) {
    call.done = true;
    const client = { ...this.stages, first_frame: connected ? call.firstFrame : 0 };
    const stages = {};
    for (const name of STAGES) stages[name] = Number(call.server[camel(name)] || 0);
    for (const name of CLIENT_STAGES) stages[name] = Number(client[name] || 0);
    if (!stages.queued) stages.queued = call.queued;
    const diff = (a, b) => (a > 0 && b > 0 ? a - b : null);
    const result = {
      callId: call.callId, partner: call.partner, region: call.region, route: call.route, stages, connected,
      connectMs: diff(stages.first_frame, stages.matched), totalMs: diff(stages.first_frame, stages.queued),
    };
    const reported = {};
    for (const name of CLIENT_STAGES) reported[camel(name)] = stages[name];
    this.send({ connectReport: { callId: call.callId, stages: reported, connected } });
    view.breakdowns.push(result);
    showBreakdown(ui, result);
    addHistory(ui, result);
    fillEdgeStage(result, this.userId, () => view.breakdowns.at(-1) === result && showBreakdown(ui, result));
    return result;
  }

  onCallEnded(ended) {
    const reason = ended.reason || "";
    const call = this.call;
    if (call && (!ended.callId || ended.callId === call.callId)) {
      call.done = true;
      call.over = true;
      showPartner(null);
    }
    if (reason === "next") return; // ours: Queued and Matched follow
    if (reason === "edge_lost") return; // ours: EdgeLost came first, EdgeAssigned follows
    if (reason === "hung_up" || reason === "partner_hung_up" || (call?.friendCall && reason.startsWith("partner_"))) {
      // A friend call, or a call one of us hung up: no new stranger unless the person asks.
      setState("ended", `The call with ${call ? call.partner : "your partner"} ended.`);
      return;
    }
    if (reason === "partner_next" || reason === "partner_left" || reason === "partner_edge_lost") {
      // Like any stranger-chat: look for the next person at once.
      this.findPartner();
      const what = { partner_left: "left", partner_next: "moved on", partner_edge_lost: "lost their connection" }[reason];
      ui.status.textContent = `${call ? call.partner : "Your partner"} ${what}; looking for someone new …`;
      return;
    }
    if (reason === "replaced by a newer session" || reason === "matchmaker shutting down") {
      this.endReason = reason; // the stream closes next: OK when replaced, UNAVAILABLE (reconnect) when a replica stops
      return;
    }
    // A match that could not be set up ("no route ...", "bridge failed: ..."): not in the pool any more.
    showError(`The call could not be set up: ${reason}. Press “Talk to someone” to try again.`);
    setState("ended", "Not in a call.");
  }

  onClosed(code, message) {
    this.closed = { code, message };
    if (code === "OK") {
      if (this.leaving) this.finish("idle", "You left.");
      else this.finish("error", "", `Your session ended: ${this.endReason || message || "closed by the server"}.`);
      return;
    }
    this.fail(closedError(code, message, this.edge ? "session" : "hello"));
  }

  onSocketClosed(event) {
    if (this.ended) return;
    if (!this.opened) {
      this.fail(`The Duet server at ${location.host} is not reachable. Is it still running?`);
    } else if (!this.closed) {
      this.fail(`The connection to the Duet server at ${location.host} was lost (WebSocket code ${event.code}).`);
    }
  }

  fail(text) {
    this.finish("error", "Stopped.", text);
  }

  // Ends everything this session holds; the page is then ready for "Talk to someone".
  finish(state, statusText, errorText = "") {
    if (this.ended) return;
    this.ended = true;
    for (const id of this.timers) clearTimeout(id);
    this.timers.clear();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
    if (this.pc) this.pc.close();
    for (const track of this.stream.getTracks()) track.stop();
    ui.local.srcObject = null;
    ui.remote.srcObject = null;
    showPartner(null);
    if (session === this) session = null;
    showIncoming(null);
    showRinging(null);
    showError(errorText);
    setState(state, statusText || (state === "idle" ? "Press “Talk to someone” to start." : "Stopped."));
  }
}

// -- buttons ----------------------------------------------------------------------

async function talk() {
  if (session && view.state === "ended") return session.findPartner();
  showError("");
  if (!navigator.mediaDevices?.getUserMedia) {
    showError("This page cannot use a camera here: browsers allow it only on https:// or on localhost / 127.0.0.1.");
    return;
  }
  setState("starting", "Asking for your camera and microphone …");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  } catch (err) {
    showError(cameraError(err));
    setState("error", "Stopped.");
    return;
  }
  ui.local.srcObject = stream;
  session = new Session(stream, ui.region.value, ui.name.value.trim());
  session.start();
}

ui.talk.addEventListener("click", talk);
ui.next.addEventListener("click", () => session?.next());
ui.leave.addEventListener("click", () => session?.leave());
ui.addFriend.addEventListener("click", () => session?.addFriend());
ui.accept.addEventListener("click", () => session?.answer(true));
ui.decline.addEventListener("click", () => session?.answer(false));
ui.cancelRing.addEventListener("click", () => session?.cancelRinging());

async function loadConfig() {
  try {
    const config = await (await fetch("config.json")).json();
    for (const region of config.demoRegions || []) {
      ui.region.append(new Option(`${region.name} (demo)`, region.code));
    }
    ui.regionChoice.hidden = !(config.demoRegions || []).length;
  } catch {
    showError(`The Duet server at ${location.host} is not reachable. Is it still running?`);
  }
}

window.duetState = Object.freeze({
  get state() { return view.state; },
  get callId() { return session?.call?.callId || ""; },
  get partner() {
    const call = session?.call;
    return call && !call.over ? { name: call.partner, region: call.region } : null;
  },
  get lastBreakdown() { return view.breakdowns.at(-1) || null; },
  get breakdowns() { return [...view.breakdowns]; },
  get error() { return view.error; },
  get edge() { return session?.edge || null; },
  get friends() { return view.friends.map((f) => ({ ...f })); },
  get incoming() { return view.incoming ? { ...view.incoming } : null; },
  get ringing() { return view.ringing ? { ...view.ringing } : null; },
  get friendNotice() { return view.friendNotice; },
  get friendCall() { return !!session?.call?.friendCall; },
  get edgesLost() { return [...(session?.edgesLost || [])]; },
  mediaStats: () => (session?.pc ? inboundStats(session.pc) : Promise.resolve(null)),
});

setState("idle", "Press “Talk to someone” to start.");
loadConfig();
