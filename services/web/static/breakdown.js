// The connect-time breakdown: the stages of a call as this page shows them.
import { authHeaders } from "./signin.js";

// The connect-path stages in order, as services/client/stages.py names them and `duet call` prints them.
export const STAGES = [
  "session_open", "edge_assigned", "leg_connected", "queued", "matched",
  "route_picked", "bridged", "first_packet_at_edge", "first_frame",
];
// Timed by this page; the others come from the matchmaker (Matched) and the edge (the call record).
export const CLIENT_STAGES = ["session_open", "edge_assigned", "leg_connected", "first_frame"];
export const fmt = (ms) => (ms === null || ms === undefined ? "–" : ms.toFixed(1));

export function showBreakdown(ui, result) {
  ui.breakdownSection.hidden = false;
  ui.breakdownTitle.textContent =
    `call ${result.callId} with ${result.partner} (${result.region}) via ${result.route.join(" > ") || "?"}`;
  const open = result.stages.session_open;
  const matched = result.stages.matched;
  ui.breakdownBody.replaceChildren(...STAGES.map((name) => {
    const row = document.createElement("tr");
    row.dataset.stage = name;
    const at = result.stages[name];
    const cells = [name, at && open ? fmt(at - open) : "–", at && matched ? fmt(at - matched) : "–"];
    for (const text of cells) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
  ui.breakdownSummary.textContent = result.connected
    ? `connect_ms (first_frame - matched) = ${fmt(result.connectMs)}   total_ms (first_frame - queued) = ${fmt(result.totalMs)}`
    : "not connected: no video from the partner";
}

export function addHistory(ui, result) {
  const item = document.createElement("li");
  item.textContent = result.connected
    ? `${result.partner} (${result.region}): connected in ${fmt(result.connectMs)} ms`
    : `${result.partner} (${result.region}): no video`;
  ui.history.append(item);
}

// The edge's first_packet_at_edge is in the call record once our ConnectReport arrived.
export async function fillEdgeStage(result, userId, onFilled) {
  for (const wait of [200, 500, 1000]) {
    await new Promise((r) => setTimeout(r, wait));
    try {
      const response = await fetch(`calls/${encodeURIComponent(result.callId)}`, { headers: authHeaders() });
      if (!response.ok) continue;
      const record = await response.json();
      const side = [record.a, record.b].find((s) => s && s.userId === userId);
      if (side) {
        // How far this browser's clock is from the matchmaker's (it answered the clock probes).
        result.clock = {
          synced: !!side.clockSynced, offsetMs: side.clockOffsetMs || 0, uncertaintyMs: side.clockUncertaintyMs || 0,
        };
      }
      const at = side?.stages?.firstPacketAtEdge;
      if (at) {
        result.stages.first_packet_at_edge = at;
        onFilled();
        return;
      }
    } catch {
      return; // the gateway is gone: the page says so elsewhere
    }
  }
}
