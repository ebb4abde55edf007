// Fallback content: the popular items per context that export publishes (`edgeperso
// gateway-content`, put in the FALLBACK KV namespace), answered in the app's own response shape
// and flagged as a fallback, so a page treats it like any other answer.

import { HOUR_BUCKETS } from "./context.js";

export const DEFAULT_K = 10;
export const MAX_K = 100;

// The most specific context there is content for, in the app's order (edge/recommend.py).
export function fallbackKey(context, contexts) {
  const keys = [
    `country=${context.country}`,
    `device=${context.device}`,
    `hour=${context.hour_bucket}`,
    "all",
  ];
  return keys.find((key) => Array.isArray(contexts?.[key])) ?? null;
}

// Reads what the page asked for without trusting it: a malformed body still gets an answer.
export function parseRequestBody(text) {
  try {
    const body = JSON.parse(text);
    return body && typeof body === "object" && !Array.isArray(body) ? body : {};
  } catch {
    return {};
  }
}

function stringList(value) {
  return Array.isArray(value) ? value.filter((v) => typeof v === "string") : [];
}

export function fallbackAnswer({ content, body, context, reason, startedMs, nowMs }) {
  const k = Number.isInteger(body.k) && body.k >= 1 ? Math.min(body.k, MAX_K) : DEFAULT_K;
  const blocked = new Set(stringList(body.exclude));
  if (body.consent !== false) {
    for (const item of stringList(body.context?.cart)) blocked.add(item);
  }
  const key = fallbackKey(context, content?.contexts);
  const items = [];
  for (const [itemId, score] of key ? content.contexts[key] : []) {
    if (items.length >= k) break;
    if (!blocked.has(itemId)) items.push({ item_id: itemId, score: Number(score) });
  }
  const missing = content ? "" : "; no fallback content is published";
  return {
    items,
    bundle: content?.bundle ?? null,
    fallback: `gateway: ${reason}${missing}`,
    personalized: false,
    context,
    took_ms: Math.round((nowMs - startedMs) * 1000) / 1000,
    segment: null,
    intent: null,
    variants: {},
    content: {},
    rules_fired: [],
    rules_held_back: [],
    slots: {},
    decision_id: null, // the gateway makes no decision: its answers teach no bandit
    details: {}, // the fallback content holds ids only: no display fields
  };
}

// Checks what came out of KV before it is trusted: a wrong shape is no content, not a crash.
export function parseFallbackContent(text) {
  const parsed = JSON.parse(text);
  if (!parsed || typeof parsed.contexts !== "object" || Array.isArray(parsed.contexts)) {
    throw new Error("fallback content has no 'contexts' object");
  }
  for (const [key, ranked] of Object.entries(parsed.contexts)) {
    if (
      !Array.isArray(ranked) ||
      !ranked.every((pair) => Array.isArray(pair) && pair.length === 2)
    ) {
      throw new Error(`fallback content for '${key}' is not a list of [item id, score] pairs`);
    }
  }
  if (parsed.hour_buckets && parsed.hour_buckets.join() !== HOUR_BUCKETS.join()) {
    throw new Error(
      `fallback content's hour buckets ${parsed.hour_buckets} are not ${HOUR_BUCKETS}`,
    );
  }
  return parsed;
}

// Fallback content read from KV at most once per `ttlMs` per isolate. A failed read keeps the
// content read before: stale popular items are better than none.
export function contentCache(
  read,
  { ttlMs = 60_000, now = () => Date.now(), log = console.error } = {},
) {
  let content = null;
  let readAt = -Infinity;
  let pending = null;
  return function current() {
    if (now() - readAt < ttlMs) return Promise.resolve(content);
    pending ??= (async () => {
      try {
        const text = await read();
        content = text === null || text === undefined ? null : parseFallbackContent(text);
      } catch (err) {
        log(`fallback content not refreshed, keeping what was read before: ${err.message}`);
      } finally {
        readAt = now();
        pending = null;
      }
      return content;
    })();
    return pending;
  };
}
