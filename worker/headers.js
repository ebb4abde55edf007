// The headers the app gets. The app believes what these say about the visitor (edge/context.py),
// so nothing a client sends may pass for Cloudflare's word, a proxy's or the gateway's: those
// headers are dropped, and the gateway sets its own from what the runtime gives the Worker.

import { contextHeaders } from "./context.js";

// The visitor's connecting IP, for the app to rate-limit on.
export const CLIENT_HEADER = "x-edgeperso-client";
// The request's Cloudflare ray id, for the app's access log (edge/accesslog.py): the gateway's
// log entries and the app's line about one request carry the same id.
export const REQUEST_ID_HEADER = "x-edgeperso-request-id";
const RAY = /^[0-9a-f]{16}(?:-[A-Z]{3})?$/;

// Cloudflare's ray id of the request, or null when it has none (a local run) or a malformed one.
export function rayId(request) {
  const value = (request.headers.get("cf-ray") ?? "").trim();
  return RAY.test(value) ? value : null;
}
// The container's environment that makes the app key its quotas on CLIENT_HEADER (edge/config.py)
// rather than on the socket's peer, which behind the gateway is the same for every visitor. Safe
// there: a container is reached only through its Worker, never from the internet.
export const TRUST_CLIENT_HEADER_ENV = { EDGEPERSO_TRUST_CLIENT_HEADER: "true" };

// cf-*: Cloudflare's names (cf-ipcountry, cf-connecting-ip, cf-ray...); x-edgeperso-*: the
// gateway's own; x-forwarded-*, forwarded, x-real-ip, true-client-ip: a proxy's word on the client.
const DROPPED_PREFIXES = ["cf-", "x-edgeperso-", "x-forwarded-"];
const DROPPED = new Set(["forwarded", "x-real-ip", "true-client-ip"]);
const ADDRESS = /^(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-f:]*:[0-9a-f:.]*)$/i; // IPv4 or IPv6

export function isDropped(name) {
  const lower = name.toLowerCase();
  return DROPPED.has(lower) || DROPPED_PREFIXES.some((prefix) => lower.startsWith(prefix));
}

// The IP the visitor connected from: `cf-connecting-ip` as Cloudflare's edge sets it on the
// request a Worker receives, over any value the client sent. `request.cf` has no address, so
// this header is the runtime's only word on it. Null when absent or not one address.
export function connectingIp(request) {
  const value = (request.headers.get("cf-connecting-ip") ?? "").trim();
  return value.length <= 45 && ADDRESS.test(value) ? value : null;
}

// The client's headers minus the dropped ones, plus the gateway's: the context from
// `request.cf` and the User-Agent, and the client identity. What the gateway does not know is
// not sent, so a client's claim can never stand in for it.
export function appHeaders(request) {
  const headers = new Headers();
  for (const [name, value] of request.headers) {
    if (!isDropped(name)) headers.append(name, value);
  }
  const set = {
    ...contextHeaders(request),
    [CLIENT_HEADER]: connectingIp(request),
    [REQUEST_ID_HEADER]: rayId(request),
  };
  for (const [name, value] of Object.entries(set)) {
    if (value) headers.set(name, value);
  }
  return headers;
}
