// The edge gateway: routes /v1/* to the app, tells it the visitor's context, gives it a latency
// budget, and answers from fallback content when the app is slow, cold, failing or unreachable.
// What it talks to comes in as `deps`, so the same code runs in workerd and under `node --test`.

import { readAtMost } from "./body.js";
import { resolveContext } from "./context.js";
import { fallbackAnswer, parseRequestBody } from "./fallback.js";
import { appHeaders, rayId } from "./headers.js";
import { consentedVisit, fillPage, MAX_PAGE_BYTES, pageRequest, readPage } from "./inject.js";
import {
  checkedEvents,
  enqueue,
  feedbackRecords,
  InvalidBatch,
  MAX_EVENTS_BODY_BYTES,
  messagesOf,
} from "./queue.js";

export const DEFAULT_BUDGET_MS = 150; // the app's own budget is 50 ms; the rest is the hop
export const DEFAULT_EVENTS_BUDGET_MS = 2000; // a batch is fsynced before it is acknowledged
export const MAX_BODY_BYTES = 2 * 1024 * 1024; // above the app's own limits (64 KiB, 1 MiB)
export const MAX_ANSWER_BYTES = 2 * 1024 * 1024; // the app's answers are a few KiB
const RECOMMEND = "/v1/recommend";
const EVENTS = "/v1/events";
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

// application/json, or a JSON type such as application/problem+json, parameters aside.
function isJsonType(contentType) {
  const type = contentType.split(";")[0].trim().toLowerCase();
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"));
}

// The app's answer read whole (up to MAX_ANSWER_BYTES), so that only JSON is ever passed on:
// { status, contentType, response } when it is JSON that parses, else { status, contentType,
// problem } saying what is wrong with it. A HEAD answer has no body to check.
async function checkedAnswer(response, method) {
  const status = response.status;
  const contentType = response.headers.get("content-type") ?? "";
  if (method === "HEAD") return { status, contentType, response: fromApp(response, null) };
  if (!isJsonType(contentType)) {
    response.body?.cancel().catch(() => {});
    const type = contentType ? `content-type ${contentType}` : "no content-type";
    return { status, contentType, problem: `a body that is not JSON (${type})` };
  }
  const { bytes, over } = await readAtMost(response.body, MAX_ANSWER_BYTES);
  if (over) return { status, contentType, problem: `a body over ${MAX_ANSWER_BYTES} bytes` };
  try {
    JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return { status, contentType, problem: "JSON that does not parse" };
  }
  return { status, contentType, response: fromApp(response, bytes) };
}

// The app's answer as the gateway passes it on, with the body it checked.
function fromApp(response, bytes) {
  const headers = new Headers(response.headers);
  if (bytes) headers.delete("content-length"); // the runtime sets it from the bytes
  headers.set("x-edgeperso-source", "app");
  return new Response(bytes, { status: response.status, statusText: response.statusText, headers });
}

// The app's checked answer; a call that throws is a rejection like one that rejects. `cf`: what
// the runtime says of where the visitor is (the forwarded request has none), for routing.
async function askApp(deps, request, cf) {
  return checkedAnswer(await deps.app(request, cf), request.method);
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
    deps.log({ event: "fallback_content_unreadable", error: err.message });
  }
  const page = parseRequestBody(body ? new TextDecoder().decode(body) : "");
  const headers = Object.fromEntries(appHeaders(request));
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

// Whether feedback goes to the queue instead of the app; a queue asked for but not bound is a
// setting to fix, said by name.
function feedbackViaQueue(env) {
  const asked = String(env.EVENTS_VIA_QUEUE ?? "").toLowerCase();
  if (asked !== "true" && asked !== "1") return false;
  if (!env.EVENTS_QUEUE || typeof env.EVENTS_QUEUE.sendBatch !== "function") {
    throw new ConfigError("EVENTS_VIA_QUEUE is set but no EVENTS_QUEUE queue producer is bound");
  }
  return true;
}

// POST /v1/events onto the queue (worker/queue.js): 200 once the queue has every event, 422
// naming the first problem, 503 to send again when the queue refused.
async function queueFeedback(request, body, env, deps) {
  const size = body ? body.length : 0;
  if (size > MAX_EVENTS_BODY_BYTES) {
    return error(
      413,
      "payload_too_large",
      `request body of ${size} bytes; a batch of events may have at most ${MAX_EVENTS_BODY_BYTES}`,
    );
  }
  let events;
  try {
    events = checkedEvents(
      new TextDecoder("utf-8", { fatal: true }).decode(body ?? new Uint8Array()),
    );
  } catch (err) {
    if (err instanceof InvalidBatch) {
      return json(422, {
        error: { code: "invalid_request", message: err.message, field: err.field },
      });
    }
    if (err instanceof TypeError) {
      return error(400, "malformed_json", "the body is not UTF-8 text");
    }
    throw err;
  }
  const records = feedbackRecords(
    events,
    Object.fromEntries(appHeaders(request)),
    deps.wallClock(),
  );
  try {
    await enqueue(env.EVENTS_QUEUE, messagesOf(records));
  } catch (err) {
    deps.log({ event: "queue_refused", path: EVENTS, error: String(err.message ?? err) });
    return error(
      503,
      "queue_unavailable",
      "the feedback queue did not take the batch; send it again (events carry their event_id, " +
        "so a batch sent twice can be de-duplicated)",
      { "retry-after": "1", "x-edgeperso-source": "gateway-queue" },
    );
  }
  return json(200, { accepted: records.length }, { "x-edgeperso-source": "gateway-queue" });
}

function tooLarge(size) {
  return error(
    413,
    "payload_too_large",
    `request body of ${size} bytes; at most ${MAX_BODY_BYTES} bytes are allowed`,
  );
}

async function route(request, env, ctx, deps) {
  const startedMs = deps.now();
  const url = new URL(request.url);
  if (!url.pathname.startsWith("/v1/")) {
    if (deps.shop) return shopPage(request, url, env, ctx, deps);
    return error(
      404,
      "not_found",
      `no route for ${url.pathname}: the gateway serves /v1/* (POST /v1/recommend, POST /v1/events); set SHOP_ORIGIN to put it in front of the shop's pages`,
    );
  }
  const declared = Number(request.headers.get("content-length") ?? 0);
  if (declared > MAX_BODY_BYTES) return tooLarge(declared);
  // Counted as it streams: a chunked body declares no length, and is cut off past the limit.
  const { bytes: body, over } = ["GET", "HEAD"].includes(request.method)
    ? { bytes: null, over: false }
    : await readAtMost(request.body, MAX_BODY_BYTES);
  if (over) return tooLarge(`more than ${MAX_BODY_BYTES}`);
  if (url.pathname === EVENTS && request.method === "POST" && feedbackViaQueue(env)) {
    return queueFeedback(request, body, env, deps);
  }
  const isRecommend = url.pathname === RECOMMEND && request.method === "POST";
  // Read now, while the app is asked, so a fallback costs nothing more than the budget.
  const contentPromise = isRecommend ? deps.fallbackContent() : null;
  contentPromise?.catch(() => {});
  const budgets = readBudgets(env);
  const budgetMs = isRecommend ? budgets.recommend : budgets.other;
  const forwarded = new Request(request.url, {
    method: request.method,
    headers: appHeaders(request),
    body,
  });

  // The budget covers the app's whole answer, body included, not only its headers.
  let outcome;
  try {
    outcome = await callWithinBudget(askApp(deps, forwarded, request.cf), budgetMs, ctx);
  } catch (err) {
    if (err instanceof ConfigError) throw err; // a setting, not the app: handle() names it
    outcome = err instanceof Error ? err : new Error(String(err));
  }

  const answer = outcome === TIMED_OUT || outcome instanceof Error ? null : outcome;
  if (answer?.response && answer.status < 500) return answer.response;
  // What the client gets instead: fallback content for a recommendation; else the app's own
  // JSON error for a 5xx, a 502 for a 2xx or 4xx that is not JSON, a 503 when there is no answer.
  let answered = 503;
  if (isRecommend) answered = "fallback";
  else if (answer?.response) answered = answer.status;
  else if (answer && answer.status < 500) answered = 502;
  // One structured entry per answer the app did not give: no bodies, no addresses, no query.
  // `ray` is the id the app's access log gives the same request; `ms`, how long it waited.
  const entry = {
    method: request.method,
    path: url.pathname,
    answered,
    ray: rayId(request),
    ms: Math.round(deps.now() - startedMs),
  };
  let reason;
  if (outcome === TIMED_OUT) {
    reason = `the app did not answer within ${budgetMs} ms`;
    deps.log({ event: "app_timed_out", ...entry, budget_ms: budgetMs });
  } else if (outcome instanceof Error) {
    reason = `the app is unreachable (${outcome.message})`;
    deps.log({ event: "app_unreachable", ...entry, error: outcome.message });
  } else {
    const { status, contentType, problem } = outcome;
    reason =
      status >= 500 ? `the app answered ${status}` : `the app answered ${status} with ${problem}`;
    const event = problem ? "app_answer_not_json" : "app_failed";
    const detail = problem ? { content_type: contentType.slice(0, 100), problem } : {};
    deps.log({ event, ...entry, status, ...detail });
  }
  if (isRecommend) {
    return recommendFallback(request, body, reason, contentPromise, startedMs, deps);
  }
  if (answer?.response) return answer.response; // a 5xx in JSON: the app's own error says what to do
  const retry =
    "send the same request again (events carry their event_id, so a batch sent twice can be de-duplicated)";
  const headers = { "retry-after": "1", "x-edgeperso-source": "gateway" };
  if (answered === 502) {
    return error(
      502,
      "bad_app_answer",
      `${reason}, which the gateway does not pass on; it may or may not have been acted on: ${retry}`,
      headers,
    );
  }
  return error(503, "app_unavailable", `${reason}; ${retry}`, headers);
}

// A shop's page, from its origin (`deps.shop`), with its slots filled when the app answers within
// its budget (worker/inject.js); anything else goes through as the origin sent it.
async function shopPage(request, url, env, ctx, deps) {
  const response = await deps.shop(request);
  const type = (response.headers.get("content-type") ?? "").split(";")[0].trim().toLowerCase();
  if (
    request.method !== "GET" ||
    response.status !== 200 ||
    type !== "text/html" ||
    !response.body
  ) {
    return response;
  }
  const [mine, untouched] = response.body.tee();
  const { bytes, over } = await readAtMost(mine, MAX_PAGE_BYTES);
  if (over) return new Response(untouched, response); // too large to hold: as it came
  untouched.cancel().catch(() => {});
  const html = new TextDecoder().decode(bytes);
  const headers = new Headers(response.headers);
  headers.delete("content-length");
  const asItCame = () => new Response(html, { status: 200, headers });
  try {
    return (await filledPage(html, headers, request, url, env, ctx, deps)) ?? asItCame();
  } catch (err) {
    // Whatever went wrong (a setting, the answer), the visitor still gets the shop's page.
    deps.log({ event: "page_not_filled", why: "error", path: url.pathname, error: String(err) });
    return asItCame();
  }
}

// The page with its slots filled, or null to send it as it came (the shop's default content,
// which the script may still fill): no slot, or no answer from the app in time.
async function filledPage(html, originHeaders, request, url, env, ctx, deps) {
  const page = readPage(html);
  if (!page.slots.length) return null;
  const startedMs = deps.now();
  const visit = consentedVisit(request, env);
  const appRequestHeaders = appHeaders(request);
  appRequestHeaders.set("content-type", "application/json");
  appRequestHeaders.delete("content-length");
  const asked = new Request(new URL("/v1/recommend", url), {
    method: "POST",
    headers: appRequestHeaders,
    body: JSON.stringify(pageRequest(page, visit, url)),
  });
  const budgetMs = readBudgets(env).recommend;
  let outcome;
  try {
    outcome = await callWithinBudget(askApp(deps, asked, request.cf), budgetMs, ctx);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    outcome = err;
  }
  const entry = { path: url.pathname, ray: rayId(request), ms: Math.round(deps.now() - startedMs) };
  if (
    outcome === TIMED_OUT ||
    outcome instanceof Error ||
    !outcome.response ||
    outcome.status !== 200
  ) {
    const why =
      outcome === TIMED_OUT ? "timed out" : outcome instanceof Error ? "unreachable" : "failed";
    deps.log({ event: "page_not_filled", why, ...entry });
    return null;
  }
  const answer = await outcome.response.json();
  if (answer.fallback) {
    deps.log({ event: "page_not_filled", why: "fallback", ...entry });
    return null; // the app's own fallback: the shop's default content is the better one
  }
  // Personalized: no shared cache may keep it, and the origin's validators no longer hold.
  const headers = new Headers(originHeaders);
  headers.set("cache-control", "private, no-store");
  headers.delete("etag");
  headers.delete("last-modified");
  headers.set("x-edgeperso-filled", "edge");
  return fillPage(deps.HTMLRewriter, html, page, answer, headers, visit?.id ?? "").response;
}

// Never a blank page and never a stack trace: a failure of the gateway itself still answers in
// JSON, and a recommendation still gets fallback content.
export async function handle(request, env, ctx, deps) {
  const startedMs = deps.now();
  try {
    return await route(request, env, ctx, deps);
  } catch (err) {
    deps.log({ event: "gateway_failed", error: String(err.stack ?? err) });
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
        deps.log({ event: "gateway_fallback_failed", error: String(inner.stack ?? inner) });
      }
    }
    return error(503, "gateway_error", `${reason}; try again`, { "retry-after": "1" });
  }
}
