// Calls to the admin API, each with the admin token this tab holds.
//
// The token lives in sessionStorage only: it is gone when the tab closes,
// no other tab sees it, and it is never sent in a cookie. Every call sends
// it as a bearer token; a 401 throws `Unauthorized`, so the page can ask
// for the token again.

const TOKEN_KEY = "bazaar.admin-token";

/** How long one call may take before the page calls the host unreachable. */
const TIMEOUT_MS = 8000;

/** The host refused the token (or the tab has none). */
export class Unauthorized extends Error {}

/** The host answered with an error status; `message` is its explanation. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The token this tab holds, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keeps `value` as this tab's token. */
export function keepToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

/** Forgets this tab's token. */
export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Whether `value` can be sent in an Authorization header at all. */
export function isSendable(value) {
  return /^[\x21-\x7e]+$/.test(value);
}

/** One call: the parsed JSON answer, or an exception. */
async function call(method, path, body) {
  const held = token();
  if (!held) {
    throw new Unauthorized("no token");
  }
  const headers = { Authorization: "Bearer " + held };
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  init.signal = controller.signal;
  try {
    const response = await fetch(path, init);
    if (response.status === 401) {
      throw new Unauthorized("the host refused the token");
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      const why = data && typeof data.error === "string" ? data.error : text;
      throw new ApiError(response.status, `${response.status}: ${why}`);
    }
    return data;
  } catch (error) {
    if (error.name === "AbortError") {
      throw new Error(`${method} ${path} took longer than ${TIMEOUT_MS / 1000} s`);
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Everything the page shows: services, their recent figures, the event
 * subscriptions, and the dead letters when there are any.
 */
export async function load() {
  const [services, stats, subscriptions] = await Promise.all([
    call("GET", "/services"),
    call("GET", "/stats"),
    call("GET", "/events"),
  ]);
  const anyDead = subscriptions.some((s) => s.dead_letters > 0);
  const deadLetters = anyDead ? await call("GET", "/events/dead-letters") : [];
  return { services, stats: stats.services || {}, subscriptions, deadLetters };
}

/**
 * Rolls `service` back to the version its current one replaced, or to
 * `to`; refused (409) unless `expected` is still current, so a double
 * click or a stale page never rolls back twice.
 */
export function rollback(service, { to, expected }) {
  const body = { expected_version: expected };
  if (to) {
    body.to = to;
  }
  return call("POST", `/services/${encodeURIComponent(service)}/rollback`, body);
}

/** Puts `subscriber`'s dead letters of `topic` back in line for delivery. */
export function replay(subscriber, topic) {
  return call("POST", "/events/dead-letters/replay", { subscriber, topic });
}
