// The edge gateway: routes /v1/* to the app, tells it the visitor's context, gives it a latency
// budget, and answers from fallback content when the app is slow, cold, failing or unreachable.
// What it talks to comes in as `deps`, so the same code runs in workerd and under `node --test`.

import { CONTEXT_HEADERS, contextHeaders, resolveContext } from "./context.js";
import { fallbackAnswer, parseRequestBody } from "./fallback.js";

export const DEFAULT_BUDGET_MS = 150; // the app's own budget is 50 ms; the rest is the hop
export const DEFAULT_EVENTS_BUDGET_MS = 2000; // a batch is fsynced before it is acknowledged
export const MAX_BODY_BYTES = 2 * 1024 * 1024; // above the app's own limits (64 KiB, 1 MiB)
const RECOMMEND = "/v1/recommend";
const TIMED_OUT = Symbol("timed out");

export class ConfigError extends Error {}

// A Worker variable that must be a positive number, refused loudly by name when it is not.
export function positiveVar(env, name, fallback, { integer = false } = {}) {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    const kind = integer ? "a positive whole number" : "a positive number of milliseconds";
    throw new ConfigError(`${name} must be ${kind}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

export function readBudgets(env) {
  return {
    recommend: positiveVar(env, "APP_BUDGET_MS", DEFAULT_BUDGET_MS),
    other: positiveVar(env, "EVENTS_BUDGET_MS", DEFAULT_EVENTS_BUDGET_MS),
  };
}

// Errors in the app's own shape (edge/errors.py): {"error": {"code", "message"}}.
function error(status, code, message, extraHeaders = {}) {
  return json(status, { error: { code, message } }, extraHeaders);
}

function json(status, payload, extraHeaders = {}) {
  return new Response(JSON.stringify(payload), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...extraHeaders },
  });
}

function isJson(response) {
  return (response.headers.get("content-type") ?? "").includes("application/json");
}

// The request as the app gets it: same method, path and body, with the CDN's context headers.
function forwardedRequest(request, body) {
  const headers = new Headers(request.headers);
  for (const name of CONTEXT_HEADERS) headers.delete(name);
  for (const [name, value] of Object.entries(contextHeaders(request))) {
    if (value) headers.set(name, value);
  }
  return new Request(request.url, { method: request.method, headers, body });
}

// The app's answer, or TIMED_OUT once the budget is spent. A call that outlives its budget is
// left to finish in the background (`waitUntil`), so a cold container still gets warm.
async function callWithinBudget(call, budgetMs, ctx) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), budgetMs);
  });
  try {
    const outcome = await Promise.race([call, timeout]);
    const ignore = () => {};
    if (outcome === TIMED_OUT) ctx.waitUntil(call.then(ignore, ignore));
    return outcome;
  } finally {
    clearTimeout(timer);
  }
}

async function recommendFallback(request, body, reason, contentPromise, startedMs, deps) {
  let content = null;
  try {
    content = await contentPromise;
  } catch (err) {
    deps.log(`fallback content could not be read: ${err.message}`);
  }
  const page = parseRequestBody(body ?? "");
  const headers = Object.fromEntries(forwardedRequest(request, null).headers);
  const context = resolveContext(page.context, headers, deps.wallClock());
  const answer = fallbackAnswer({
    content,
    body: page,
    context,
    reason,
    startedMs,
    nowMs: deps.now(),
  });
  return json(200, answer, { "x-edgeperso-source": "gateway-fallback" });
}

async function route(request, env, ctx, deps) {
  const startedMs = deps.now();
  const url = new URL(request.url);
  if (!url.pathname.startsWith("/v1/")) {
    return error(
      404,
      "not_found",
      `no route for ${url.pathname}: the gateway serves /v1/* (POST /v1/recommend, POST /v1/events)`,
    );
  }
  const declared = Number(request.headers.get("content-length") ?? 0);
  if (declared > MAX_BODY_BYTES) {
    return error(
      413,
      "payload_too_large",
      `request body of ${declared} bytes; at most ${MAX_BODY_BYTES} are allowed`,
    );
  }
  const isRecommend = url.pathname === RECOMMEND && request.method === "POST";
  // Read now, while the app is asked, so a fallback costs nothing more than the budget.
  const contentPromise = isRecommend ? deps.fallbackContent() : null;
  contentPromise?.catch(() => {});
  const body = ["GET", "HEAD"].includes(request.method) ? null : await request.text();
  const budgets = readBudgets(env);
  const budgetMs = isRecommend ? budgets.recommend : budgets.other;

  let outcome;
  try {
    outcome = await callWithinBudget(deps.app(forwardedRequest(request, body)), budgetMs, ctx);
  } catch (err) {
    outcome = err instanceof Error ? err : new Error(String(err));
  }

  if (outcome instanceof Response && outcome.status < 500) {
    const passed = new Response(outcome.body, outcome);
    passed.headers.set("x-edgeperso-source", "app");
    return passed;
  }
  const reason =
    outcome === TIMED_OUT
      ? `the app did not answer within ${budgetMs} ms`
      : outcome instanceof Response
        ? `the app answered ${outcome.status}`
        : `the app is unreachable (${outcome.message})`;
  deps.log(`${request.method} ${url.pathname}: ${reason}`); // one line per answer the app did not give
  if (isRecommend) {
    outcome instanceof Response && outcome.body?.cancel();
    return recommendFallback(request, body, reason, contentPromise, startedMs, deps);
  }
  if (outcome instanceof Response && isJson(outcome)) {
    const passed = new Response(outcome.body, outcome); // the app's own error says what to do
    passed.headers.set("x-edgeperso-source", "app");
    return passed;
  }
  outcome instanceof Response && outcome.body?.cancel();
  return error(
    503,
    "app_unavailable",
    `${reason}; send the same request again (events carry their event_id, so a batch sent twice can be de-duplicated)`,
    { "retry-after": "1", "x-edgeperso-source": "gateway" },
  );
}

// Never a blank page and never a stack trace: a failure of the gateway itself still answers in
// JSON, and a recommendation still gets fallback content.
export async function handle(request, env, ctx, deps) {
  const startedMs = deps.now();
  try {
    return await route(request, env, ctx, deps);
  } catch (err) {
    deps.log(`gateway failed: ${err.stack ?? err}`);
    const url = new URL(request.url);
    const reason = err instanceof ConfigError ? `misconfigured: ${err.message}` : "gateway error";
    if (url.pathname === RECOMMEND && request.method === "POST") {
      try {
        return await recommendFallback(
          request,
          null,
          reason,
          deps.fallbackContent(),
          startedMs,
          deps,
        );
      } catch (inner) {
        deps.log(`gateway fallback failed: ${inner.stack ?? inner}`);
      }
    }
    return error(503, "gateway_error", `${reason}; try again`, { "retry-after": "1" });
  }
}
