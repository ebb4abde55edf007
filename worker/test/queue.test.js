import { test } from "node:test";
import assert from "node:assert/strict";
import { handle } from "../gateway.js";
import {
  checkedEvents,
  feedbackRecords,
  MAX_EVENTS,
  MAX_MESSAGE_BYTES,
  messagesOf,
  writeBatch,
} from "../queue.js";

// A queue producer that keeps what it is given; `failing` makes it refuse.
function fakeQueue({ failing = false } = {}) {
  const sent = [];
  return {
    sent,
    async sendBatch(messages) {
      if (failing) throw new Error("queue unavailable");
      assert.ok(messages.length <= 100);
      sent.push(...messages);
    },
  };
}

function gateway(env) {
  const logged = [];
  const deps = {
    app: async () => {
      throw new Error("the app must not be asked");
    },
    fallbackContent: async () => ({ bundle: "b", contexts: { all: [["a", 1]] } }),
    now: () => performance.now(),
    wallClock: () => Date.parse("2026-12-07T10:00:00Z"),
    log: (entry) => logged.push(entry),
  };
  const call = (body, headers = {}) =>
    handle(
      new Request("https://shop.example/v1/events", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
      }),
      { APP_BUDGET_MS: "50", EVENTS_VIA_QUEUE: "true", ...env },
      { waitUntil: () => {} },
      deps,
    );
  return { call, logged };
}

const view = (i, extra = {}) => ({
  type: "view",
  item_id: `i${i}`,
  session_id: "s1",
  event_id: `e${i}`,
  ...extra,
});

test("a batch goes on the queue with the visitor's context, and is acknowledged after", async () => {
  const queue = fakeQueue();
  const { call } = gateway({ EVENTS_QUEUE: queue });
  const response = await call(
    { events: [view(1), view(2, { device: "tablet" })] },
    {
      "x-edgeperso-country": "de",
      "user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile",
    },
  );
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-edgeperso-source"), "gateway-queue");
  assert.deepEqual(await response.json(), { accepted: 2 });
  const records = queue.sent.flatMap((m) => m.body);
  assert.equal(records.length, 2);
  assert.equal(records[0].ts, "2026-12-07T10:00:00.000Z"); // no ts: when it arrived
  assert.equal(records[0].country, ""); // the client's own x-edgeperso-* header is dropped
  assert.equal(records[0].device, "mobile");
  assert.equal(records[1].device, "tablet"); // the event's own word wins
  assert.equal(records[0].via, "queue");
});

test("bad batches are refused by field, as the app refuses them", async () => {
  const { call } = gateway({ EVENTS_QUEUE: fakeQueue() });
  for (const [body, field, said] of [
    ["{not json", "$", /not JSON/],
    [[], "$", /must be an object/],
    [{ events: [] }, "$.events", /1 to 1000/],
    [{ events: [view(1)], extra: 1 }, "$.extra", /unknown field "extra"/],
    [{ events: [{ ...view(1), colour: "red" }] }, "$.events[0].colour", /unknown field/],
    [{ events: [{ item_id: "i1", session_id: "s" }] }, "$.events[0].type", /type is required/],
    [{ events: [{ type: "view", item_id: "i1" }] }, "$.events[0]", /user_id or session_id/],
    [{ events: [view(1, { qty: 1.5 })] }, "$.events[0].qty", /whole number/],
    [{ events: [view(1, { propensity: 0 })] }, "$.events[0].propensity", /above 0/],
    [{ events: [view(1, { ts: "2026-12-07 10:00" })] }, "$.events[0].ts", /offset/],
    [{ events: [view(1, { item_id: "x".repeat(129) })] }, "$.events[0].item_id", /1 to 128/],
  ]) {
    const response = await call(body);
    assert.equal(response.status, 422, JSON.stringify(body).slice(0, 80));
    const { error } = await response.json();
    assert.equal(error.code, "invalid_request");
    assert.equal(error.field, field);
    assert.match(error.message, said);
  }
  const many = { events: Array.from({ length: MAX_EVENTS + 1 }, (_, i) => view(i)) };
  assert.equal((await call(many)).status, 422);
});

test("a queue that refuses gets the client a 503 to send again, and it is logged", async () => {
  const { call, logged } = gateway({ EVENTS_QUEUE: fakeQueue({ failing: true }) });
  const response = await call({ events: [view(1)] });
  assert.equal(response.status, 503);
  assert.equal(response.headers.get("retry-after"), "1");
  assert.match((await response.json()).error.message, /send it again/);
  assert.equal(logged[0].event, "queue_refused");
});

test("a queue asked for but not bound is named", async () => {
  const { call } = gateway({});
  const response = await call({ events: [view(1)] });
  assert.equal(response.status, 503);
  assert.match((await response.json()).error.message, /EVENTS_QUEUE queue producer/);
});

test("a large batch is cut into messages a queue takes", () => {
  const events = Array.from({ length: 1000 }, (_, i) => view(i, { decision_id: "d".repeat(900) }));
  const messages = messagesOf(feedbackRecords(checkedEvents(JSON.stringify({ events })), {}, 0));
  assert.ok(messages.length > 1);
  for (const m of messages) {
    assert.ok(new TextEncoder().encode(JSON.stringify(m.body)).length <= MAX_MESSAGE_BYTES);
  }
  assert.equal(messages.flatMap((m) => m.body).length, 1000);
});

function fakeBucket({ failing = false } = {}) {
  const objects = new Map();
  return {
    objects,
    async put(key, body) {
      if (failing) throw new Error("R2 unavailable");
      objects.set(key, body);
    },
  };
}

function fakeBatch(messages) {
  const batch = { messages, acked: false, ackAll: () => (batch.acked = true) };
  return batch;
}

test("the consumer writes a batch as one object named by its messages, then acknowledges", async () => {
  const bucket = fakeBucket();
  const records = feedbackRecords([view(1), view(2)], {}, Date.parse("2026-12-07T10:00:00Z"));
  const messages = [
    { id: "m2", body: [records[1]] },
    { id: "m1", body: [records[0]] },
  ];
  const first = fakeBatch(messages);
  await writeBatch(first, { FEEDBACK_BUCKET: bucket, FEEDBACK_PREFIX: "/shop/" });
  assert.ok(first.acked);
  const [[key, body]] = [...bucket.objects];
  assert.match(key, /^shop\/events\/dt=2026-12-07\/queue\/events-[0-9a-f]{32}\.jsonl$/);
  assert.deepEqual(
    body
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line).event_id),
    ["e2", "e1"],
  );
  // Delivered again (its acknowledgement lost): the same object, not a second one.
  await writeBatch(fakeBatch([...messages].reverse()), {
    FEEDBACK_BUCKET: bucket,
    FEEDBACK_PREFIX: "shop",
  });
  assert.equal(bucket.objects.size, 1);
});

test("a batch R2 does not take is not acknowledged: the queue retries it", async () => {
  const batch = fakeBatch([{ id: "m1", body: [view(1)] }]);
  await assert.rejects(
    writeBatch(batch, { FEEDBACK_BUCKET: fakeBucket({ failing: true }) }),
    /R2 unavailable/,
  );
  assert.equal(batch.acked, false);
});
