// The homeserver, same origin: the Matrix client API and the module's endpoints. The session
// (access token, user id, device) lives in sessionStorage: it ends with the tab.

const SESSION_KEY = "laiwang.session";
export const LAIWANG = "/_synapse/client/laiwang/v1";
export const CLIENT = "/_matrix/client/v3";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.errcode = (body && body.errcode) || "";
    this.body = body || {};
  }
}

export function loadSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

export function saveSession(session) {
  if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  else sessionStorage.removeItem(SESSION_KEY);
}

export const enc = encodeURIComponent;

let txnCounter = 0;
export function txnId() {
  return `lw${Date.now()}.${txnCounter++}.${Math.random().toString(36).slice(2, 8)}`;
}

// One call; throws ApiError with the server's `error` sentence (or a network error in words).
export async function call(method, path, body, { auth = true, query } = {}) {
  const session = loadSession();
  const headers = {};
  if (auth && session) headers.Authorization = `Bearer ${session.access_token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) q.set(k, v);
    const s = q.toString();
    if (s) url += `?${s}`;
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, { errcode: "NETWORK", error: `The server cannot be reached (${e.message}).` });
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && auth && data && data.errcode === "M_UNKNOWN_TOKEN") {
      saveSession(null);
      window.dispatchEvent(new Event("laiwang:signed-out"));
    }
    throw new ApiError(response.status, data);
  }
  return data || {};
}

export const lw = (method, path, body, opts) => call(method, LAIWANG + path, body, opts);
export const cs = (method, path, body, opts) => call(method, CLIENT + path, body, opts);

export async function login(username, password) {
  const data = await cs(
    "POST",
    "/login",
    {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: username },
      password,
      initial_device_display_name: "Laiwang web",
    },
    { auth: false },
  );
  saveSession({ access_token: data.access_token, user_id: data.user_id, device_id: data.device_id });
  return data;
}

export async function loginWithToken(token) {
  const data = await cs(
    "POST",
    "/login",
    { type: "m.login.token", token, initial_device_display_name: "Laiwang web" },
    { auth: false },
  );
  saveSession({ access_token: data.access_token, user_id: data.user_id, device_id: data.device_id });
  return data;
}

// Invalidates the token on the server, then forgets it here (also when the server is gone).
export async function logout() {
  try {
    await cs("POST", "/logout", {});
  } finally {
    saveSession(null);
  }
}

export function sendMessage(roomId, content) {
  return cs("PUT", `/rooms/${enc(roomId)}/send/m.room.message/${enc(txnId())}`, content);
}

export function sendEvent(roomId, type, content) {
  return cs("PUT", `/rooms/${enc(roomId)}/send/${enc(type)}/${enc(txnId())}`, content);
}

// An <img> for an mxc:// URI. Media needs the access token (authenticated media), so the
// thumbnail is fetched here and shown from a blob: URL (the CSP allows blob: images only).
export function mxcImage(mxc, alt, size = 96) {
  const img = document.createElement("img");
  img.alt = alt;
  img.width = size;
  img.height = size;
  img.className = "thumb";
  const m = /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(String(mxc || ""));
  if (!m) return null;
  const session = loadSession();
  const url = `/_matrix/client/v1/media/thumbnail/${enc(m[1])}/${enc(m[2])}?width=${size}&height=${size}&method=crop`;
  fetch(url, { headers: session ? { Authorization: `Bearer ${session.access_token}` } : {} })
    .then((r) => (r.ok ? r.blob() : null))
    .then((blob) => {
      if (blob) img.src = URL.createObjectURL(blob);
      else img.remove();
    })
    .catch(() => img.remove());
  return img;
}
