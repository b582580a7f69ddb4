// Who this page is signed in as: {token, userId, expiresAt (epoch s)}, from the gateway's
// development sign-in (POST token); a production deployment gives the page its token from its own login.
let auth = null;
const TOKEN_MARGIN_S = 60; // ask for a new token when less than this is left

// A valid sign-in, asking the gateway for a new one when the last is (nearly) expired.
export async function signIn() {
  if (auth && auth.expiresAt - Date.now() / 1000 > TOKEN_MARGIN_S) return auth;
  let response;
  try {
    response = await fetch("token", { method: "POST" });
  } catch {
    throw new Error(`The Duet server at ${location.host} is not reachable. Is it still running?`);
  }
  if (response.status === 404) {
    throw new Error("This Duet server signs in no guests: sign in through the app's own login to get a token.");
  }
  if (!response.ok) throw new Error(`Could not sign in: the server answered ${response.status} ${response.statusText}.`);
  auth = await response.json();
  return auth;
}

// The matchmaker refused the token: the next "Talk to someone" signs in afresh.
export function forgetSignIn() {
  auth = null;
}

export const signedIn = () => auth !== null;

// Headers for the gateway's REST calls (friends, call records) as the signed-in user.
export const authHeaders = () => (auth ? { Authorization: `Bearer ${auth.token}` } : {});
