// Errors in words: what the person is told when the camera or the session fails.
import { forgetSignIn } from "./signin.js";

export function cameraError(err) {
  switch (err && err.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera and microphone access was denied. Allow them for this site in the browser's settings, then press “Talk to someone” again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera or microphone was found. Connect one, then press “Talk to someone” again.";
    case "NotReadableError":
    case "AbortError":
      return "The camera or microphone could not be started: another application may be using it.";
    default:
      return `The camera could not be started: ${err && err.message ? err.message : err}`;
  }
}

export function closedError(code, message, phase) {
  const said = message ? message.charAt(0).toUpperCase() + message.slice(1) : "no reason given";
  if (code === "UNAUTHENTICATED") {
    forgetSignIn();
    return `Duet did not accept your sign-in: ${said}.`;
  }
  if (phase === "hello") return `Could not start a session: ${said}.`;
  if (code === "UNAVAILABLE") return `The service is unavailable: ${said}.`;
  return `The session ended (${code}): ${said}.`;
}
