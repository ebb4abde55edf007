// Feedback through a Cloudflare Queue into R2, for a shop that wants its events off the
// containers altogether (docs/deploy.md, "Feedback through a Queue"). With EVENTS_VIA_QUEUE =
// "true" and an EVENTS_QUEUE producer bound, the gateway checks each POST /v1/events batch
// against the app's schema (edge/schemas.py, FeedbackBatch), adds what it knows of the visitor
// (device, country, local hour, the time it arrived), puts it on the queue, and answers 200
// only once the queue has it. The queue's consumer, this Worker too, writes each delivered
// batch of messages to the R2 bucket FEEDBACK_BUCKET as one JSON-lines object, under the layout
// the nodes ship to (edge/shipping.py), so `edgeperso export --events s3://...` reads both.
//
// What this path does not do: the app never sees these events, so its bandits do not learn
// from them online (the next build's priors still do), and their decision ids are not checked.

import { resolveContext } from "./context.js";

export const MAX_EVENTS = 1000; // per batch, as the app
export const MAX_EVENTS_BODY_BYTES = 1024 * 1024; // as the app's EDGEPERSO_MAX_EVENTS_BODY_BYTES
// A queue message holds at most 128 KB; a batch is cut into messages well under that.
export const MAX_MESSAGE_BYTES = 96 * 1024;
const MAX_SEND_BATCH_BYTES = 240 * 1024; // sendBatch: at most 256 KB and 100 messages a call
const MAX_SEND_BATCH_MESSAGES = 100;

// The app's FeedbackEvent fields, and what each may be.
const ID = { kind: "string", min: 1, max: 128 };
const LABEL = { kind: "string", min: 0, max: 64 };
const FIELDS = {
  type: LABEL,
  item_id: ID,
  user_id: ID,
  session_id: ID,
  ts: { kind: "timestamp" },
  event_id: ID,
  slot: LABEL,
  experiment: LABEL,
  variant: LABEL,
  propensity: { kind: "number", above: 0, max: 1 },
  price: { kind: "number", min: 0 },
  qty: { kind: "integer", min: 1, max: 100000 },
  dwell_ms: { kind: "integer", min: 0, max: 86400000 },
  device: LABEL,
  country: LABEL,
  local_hour: { kind: "integer", min: 0, max: 23 },
  decision_id: { kind: "string", min: 1, max: 1024 },
};
const REQUIRED = ["type", "item_id"];
const WITH_OFFSET = /(?:[zZ]|[+-]\d\d:?\d\d)$/;

export class InvalidBatch extends Error {
  constructor(message, field) {
    super(message);
    this.field = field;
  }
}

// The problem with one field's value, or null.
function problemWith(value, rule) {
  if (value === null) return null; // as the app: null is "not given"
  switch (rule.kind) {
    case "string":
      if (typeof value !== "string") return "must be a string";
      if (value.length < rule.min || value.length > rule.max) {
        return `must be ${rule.min} to ${rule.max} characters long`;
      }
      return null;
    case "timestamp":
      if (
        typeof value !== "string" ||
        !WITH_OFFSET.test(value) ||
        Number.isNaN(Date.parse(value))
      ) {
        return "must be an RFC 3339 timestamp with its offset, e.g. 2026-12-07T10:00:00Z";
      }
      return null;
    case "integer":
    case "number": {
      if (typeof value !== "number" || !Number.isFinite(value)) return "must be a number";
      if (rule.kind === "integer" && !Number.isInteger(value)) return "must be a whole number";
      if (rule.above !== undefined && !(value > rule.above)) return `must be above ${rule.above}`;
      if (rule.min !== undefined && value < rule.min) return `must be at least ${rule.min}`;
      if (rule.max !== undefined && value > rule.max) return `must be at most ${rule.max}`;
      return null;
    }
  }
  return null;
}

// The batch's events, checked as the app checks them; an InvalidBatch names the first problem.
export function checkedEvents(text) {
  let batch;
  try {
    batch = JSON.parse(text);
  } catch (err) {
    throw new InvalidBatch(`the body is not JSON (${err.message})`, "$");
  }
  if (batch === null || typeof batch !== "object" || Array.isArray(batch)) {
    throw new InvalidBatch('the body must be an object: {"events": [...]}', "$");
  }
  const extra = Object.keys(batch).filter((key) => key !== "events");
  if (extra.length)
    throw new InvalidBatch(`unknown field ${JSON.stringify(extra[0])}`, `$.${extra[0]}`);
  const events = batch.events;
  if (!Array.isArray(events) || events.length < 1 || events.length > MAX_EVENTS) {
    throw new InvalidBatch(`events must be a list of 1 to ${MAX_EVENTS} events`, "$.events");
  }
  events.forEach((event, i) => {
    const at = `$.events[${i}]`;
    if (event === null || typeof event !== "object" || Array.isArray(event)) {
      throw new InvalidBatch("an event must be an object", at);
    }
    for (const [name, value] of Object.entries(event)) {
      const rule = FIELDS[name];
      if (!rule) throw new InvalidBatch(`unknown field ${JSON.stringify(name)}`, `${at}.${name}`);
      const problem = problemWith(value, rule);
      if (problem) throw new InvalidBatch(`${name} ${problem}`, `${at}.${name}`);
    }
    for (const name of REQUIRED) {
      if (event[name] === undefined || event[name] === null) {
        throw new InvalidBatch(`${name} is required`, `${at}.${name}`);
      }
    }
    if (!event.user_id && !event.session_id) {
      throw new InvalidBatch("an event needs user_id or session_id", at);
    }
  });
  return events;
}

// The log records of a batch, as the app writes them (edge/feedback.py): the visitor's device,
// country and local hour where the event does not say, and when it arrived.
export function feedbackRecords(events, headers, nowMs) {
  const context = resolveContext({}, headers, nowMs);
  const received = new Date(nowMs).toISOString();
  return events.map((event) => ({
    ...event,
    ts: event.ts ?? received,
    user_id: event.user_id ?? "",
    session_id: event.session_id ?? "",
    device: event.device ?? context.device,
    country: event.country ?? context.country,
    local_hour: event.local_hour ?? context.local_hour,
    received_at: received,
    via: "queue",
  }));
}

// Records cut into messages of at most MAX_MESSAGE_BYTES of JSON each.
export function messagesOf(records) {
  const messages = [];
  let current = [];
  let size = 2;
  for (const record of records) {
    const bytes = new TextEncoder().encode(JSON.stringify(record)).length + 1;
    if (current.length && size + bytes > MAX_MESSAGE_BYTES) {
      messages.push({ body: current });
      current = [];
      size = 2;
    }
    current.push(record);
    size += bytes;
  }
  if (current.length) messages.push({ body: current });
  return messages;
}

// Put the messages on the queue, in sendBatch calls within its limits.
export async function enqueue(queue, messages) {
  let group = [];
  let size = 0;
  for (const message of messages) {
    const bytes = new TextEncoder().encode(JSON.stringify(message.body)).length;
    if (
      group.length &&
      (group.length === MAX_SEND_BATCH_MESSAGES || size + bytes > MAX_SEND_BATCH_BYTES)
    ) {
      await queue.sendBatch(group);
      group = [];
      size = 0;
    }
    group.push(message);
    size += bytes;
  }
  if (group.length) await queue.sendBatch(group);
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// The consumer: one R2 object per delivered batch of messages, named by the day its first
// record arrived and the messages' ids, so a batch delivered again (a retry after a failed
// put, or after a put whose acknowledgement was lost) writes the same object. Acknowledged only
// once R2 has it; a failure leaves the messages to the queue's retries, then its dead-letter
// queue.
export async function writeBatch(batch, env) {
  if (!batch.messages.length) return;
  const records = batch.messages.flatMap((message) => message.body);
  const day = String(records[0]?.received_at ?? new Date().toISOString()).slice(0, 10);
  const ids = batch.messages.map((message) => message.id).sort();
  const digest = (await sha256Hex(ids.join(","))).slice(0, 32);
  const prefix = String(env.FEEDBACK_PREFIX ?? "").replace(/^\/+|\/+$/g, "");
  const key = `${prefix ? prefix + "/" : ""}events/dt=${day}/queue/events-${digest}.jsonl`;
  const body = records.map((record) => JSON.stringify(record)).join("\n") + "\n";
  await env.FEEDBACK_BUCKET.put(key, body, {
    httpMetadata: { contentType: "application/x-ndjson" },
  });
  batch.ackAll();
}
