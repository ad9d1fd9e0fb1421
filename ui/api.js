// The console's one door to the server: the signed-in token (kept in sessionStorage, so it
// leaves with the tab), controller calls and service requests with it as a Bearer header.

const KEY = 'ferrolite.console';

/** { token, workspace } or null. */
export function credentials() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) || 'null');
    return saved && saved.token && saved.workspace ? saved : null;
  } catch {
    return null;
  }
}

export function remember(token, workspace) {
  sessionStorage.setItem(KEY, JSON.stringify({ token, workspace }));
}

export function forget() {
  sessionStorage.removeItem(KEY);
}

/** The workspace a ferrolite token was issued for (its `ws` claim), if it is one. */
export function workspaceOf(token) {
  const payload = token.split('.')[1];
  if (!payload) return null;
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    return JSON.parse(json).ws || null;
  } catch {
    return null;
  }
}

/** A failed call, with the server's own message. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function headers(token, json) {
  const h = { authorization: `Bearer ${token}` };
  if (json) h['content-type'] = 'application/json';
  return h;
}

async function read(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: the status line is all we can say.
  }
  if (!response.ok) {
    const message = body?.error?.message || `${response.status} ${response.statusText || 'error'}`;
    throw new ApiError(response.status, message, body);
  }
  return body;
}

/** Calls a server-apps function with keyword arguments, as `creds` (default: the signed-in ones). */
export async function call(fn, kwargs = {}, creds = credentials()) {
  if (!creds) throw new ApiError(401, 'not signed in');
  const url = `/${encodeURIComponent(creds.workspace)}/services/server-apps/${fn}`;
  const response = await fetch(url, { method: 'POST', headers: headers(creds.token, true), body: JSON.stringify(kwargs) });
  try {
    return await read(response);
  } catch (e) {
    // The saved token stopped working (expired, or the server's secret changed): sign in again.
    if (e.status === 401 && sameAsSaved(creds)) window.dispatchEvent(new CustomEvent('ferrolite:signed-out', { detail: e.message }));
    throw e;
  }
}

function sameAsSaved(creds) {
  const saved = credentials();
  return saved && saved.token === creds.token && saved.workspace === creds.workspace;
}

/** The path of a running session's service (relative, so it works behind any proxy). */
export function servicePath(session, path) {
  return `/${encodeURIComponent(session.workspace)}/apps/${encodeURIComponent(session.service_id)}/v1${path}`;
}

/** POSTs JSON to a service; the raw Response (streams are read by the caller). */
export async function post(path, body, signal) {
  const creds = credentials();
  if (!creds) throw new ApiError(401, 'not signed in');
  return fetch(path, { method: 'POST', headers: headers(creds.token, true), body: JSON.stringify(body), signal });
}

/** Throws the server's error for a failed Response. */
export async function check(response) {
  if (response.ok) return response;
  await read(response);
  return response;
}
