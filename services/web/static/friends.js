// The friends panel: the list with who is online (ListFriends through the gateway), unfriending,
// and the ringing / incoming-call banners. The page's state (view), its elements (ui) and the
// live session are the page's; this module only draws them and talks to the gateway's REST routes.
import { authHeaders, signedIn } from "./signin.js";

export function friendsPanel({ ui, view, getSession, showError }) {
  function friendNotice(text) {
    view.friendNotice = text;
    ui.status.textContent = text;
  }

  function showFriends(friends) {
    view.friends = friends;
    ui.friendsEmpty.hidden = friends.length > 0;
    ui.friends.replaceChildren(...friends.map((friend) => {
      const item = document.createElement("li");
      item.dataset.userId = friend.userId;
      const dot = document.createElement("span");
      dot.className = `dot${friend.busy ? " busy" : friend.online ? " online" : ""}`;
      dot.title = friend.busy ? "in a call" : friend.online ? "online" : "offline";
      const name = document.createElement("span");
      name.textContent = `${friend.displayName} (${friend.busy ? "in a call" : friend.online ? "online" : "offline"})`;
      const call = document.createElement("button");
      call.type = "button";
      call.textContent = "Call";
      call.className = "call-friend";
      call.disabled = !(getSession() && getSession().stages.leg_connected && friend.online && !friend.busy && !view.ringing && !view.incoming);
      call.addEventListener("click", () => getSession()?.callFriend(friend));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Unfriend";
      remove.addEventListener("click", () => removeFriend(friend));
      item.append(dot, name, call, remove);
      return item;
    }));
  }

  async function refreshFriends() {
    if (!signedIn()) return;
    try {
      const response = await fetch("friends", { headers: authHeaders() });
      const body = await response.json();
      if (!response.ok) return showError(`Could not load your friends: ${body.error?.message || response.status}.`);
      showFriends((body.friends || []).map((f) => ({
        userId: f.userId, displayName: f.displayName || f.userId, online: !!f.online, busy: !!f.busy,
      })));
    } catch {
      // The gateway is gone: the session says so.
    }
  }

  async function removeFriend(friend) {
    if (!signedIn()) return;
    const response = await fetch(`friends/${encodeURIComponent(friend.userId)}`, {
      method: "DELETE", headers: authHeaders(),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      showError(`Could not remove ${friend.displayName}: ${body.error?.message || response.status}.`);
    } else {
      friendNotice(`${friend.displayName} is no longer your friend.`);
    }
    refreshFriends();
  }

  function showIncoming(incoming) {
    view.incoming = incoming;
    ui.incoming.hidden = !incoming;
    ui.incomingText.textContent = incoming ? `${incoming.callerName} is calling you` : "";
    showFriends(view.friends);
  }

  function showRinging(ringing) {
    view.ringing = ringing;
    ui.ringing.hidden = !ringing;
    ui.ringingText.textContent = ringing ? `Calling ${ringing.name} …` : "";
    showFriends(view.friends);
  }

  return { friendNotice, showFriends, refreshFriends, showIncoming, showRinging };
}
