// WebRTC details of the page's leg: ICE gathering, the partner's first frame, inbound figures.

export function iceGatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export function loopbackHint(sdp) {
  const candidates = (sdp || "").split("\n").filter((l) => l.startsWith("a=candidate"));
  if (candidates.length && candidates.every((l) => l.includes(" 127.0.0.1 "))) {
    return " The edge offers only 127.0.0.1: if this browser cannot reach it (no network interface besides loopback, or loopback candidates refused), start it with --allow-loopback-in-peer-connection, or start the cluster with DUET_ICE_HOSTS set to an address of this machine.";
  }
  return "";
}

// The partner's first frame: the first video frame shown after arming whose last packet arrived
// after Matched. After "next" the leg keeps playing the old partner until the edge re-bridges,
// which happens before the matchmaker sends Matched, so frames received earlier are not the new
// partner's. On a fresh leg nobody else has sent video, so any frame counts (media may precede Matched).
export function watchFirstFrame(video, owner, call) {
  const fresh = !owner.previousVideo;
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    const onFrame = (_now, meta) => {
      if (call.done || owner.call !== call || owner.ended) return;
      const received = meta.receiveTime ?? meta.presentationTime;
      if (fresh || received > call.matchedAt) {
        owner.onFirstFrame(call, performance.timeOrigin + meta.presentationTime);
      } else {
        video.requestVideoFrameCallback(onFrame);
      }
    };
    video.requestVideoFrameCallback(onFrame);
    return;
  }
  // Without frame callbacks: the decoder's frame count advancing after Matched.
  let base = null;
  const poll = async () => {
    if (call.done || owner.call !== call || owner.ended) return;
    const decoded = (await inboundStats(owner.pc)).video.framesDecoded;
    if (base === null) base = fresh ? 0 : decoded;
    if (decoded > base) owner.onFirstFrame(call, performance.timeOrigin + performance.now());
    else setTimeout(poll, 10);
  };
  poll();
}

export async function inboundStats(pc) {
  const out = {
    video: {
      framesDecoded: 0, framesReceived: 0, framesDropped: 0, keyFramesDecoded: 0, freezeCount: 0,
      totalFreezesDuration: 0, pliCount: 0, nackCount: 0, codec: "", decoderImplementation: "",
    },
    audio: {
      totalSamplesReceived: 0, concealedSamples: 0, totalAudioEnergy: 0, totalSamplesDuration: 0, audioLevel: 0,
      codec: "",
    },
  };
  if (!pc) return out;
  const report = await pc.getStats();
  const codec = (s) => report.get(s.codecId)?.mimeType || "";
  report.forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.kind === "video") {
      out.video = {
        framesDecoded: s.framesDecoded || 0, framesReceived: s.framesReceived || 0,
        framesDropped: s.framesDropped || 0, keyFramesDecoded: s.keyFramesDecoded || 0,
        freezeCount: s.freezeCount || 0, totalFreezesDuration: s.totalFreezesDuration || 0,
        pliCount: s.pliCount || 0, nackCount: s.nackCount || 0,
        codec: codec(s), decoderImplementation: s.decoderImplementation || "",
      };
    } else if (s.kind === "audio") {
      out.audio = {
        totalSamplesReceived: s.totalSamplesReceived || 0, concealedSamples: s.concealedSamples || 0,
        totalAudioEnergy: s.totalAudioEnergy || 0, totalSamplesDuration: s.totalSamplesDuration || 0,
        audioLevel: s.audioLevel || 0, codec: codec(s),
      };
    }
  });
  return out;
}
