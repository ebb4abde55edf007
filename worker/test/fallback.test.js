import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  contentCache,
  fallbackAnswer,
  fallbackKey,
  parseFallbackContent,
  parseRequestBody,
} from "../fallback.js";

const CONTENT = {
  bundle: "20260101T000000Z-abc",
  hour_buckets: ["night", "morning", "afternoon", "evening"],
  contexts: {
    all: [
      ["a", 9],
      ["b", 8],
      ["c", 7],
      ["d", 6],
    ],
    "country=de": [
      ["de1", 5],
      ["de2", 4],
      ["a", 3],
    ],
    "device=mobile": [["m1", 2]],
  },
};
const CONTEXT = {
  device: "mobile",
  country: "de",
  local_hour: 9,
  hour_bucket: "morning",
  page: null,
};
// The fields every /v1/recommend answer has, the app's and the gateway's alike.
const RESPONSE_FIELDS = JSON.parse(
  readFileSync(new URL("../../tests/cases/recommend_response.json", import.meta.url)),
).fields;

// A fallback answer, with defaults for what a test does not look at.
const answerFor = (overrides) =>
  fallbackAnswer({
    content: CONTENT,
    body: {},
    context: CONTEXT,
    reason: "r",
    startedMs: 0,
    nowMs: 0,
    ...overrides,
  });

test("the most specific context with content: country, then device, then hour, then all", () => {
  assert.equal(fallbackKey(CONTEXT, CONTENT.contexts), "country=de");
  assert.equal(fallbackKey({ ...CONTEXT, country: "fr" }, CONTENT.contexts), "device=mobile");
  assert.equal(fallbackKey({ ...CONTEXT, country: "", device: "" }, CONTENT.contexts), "all");
  assert.equal(fallbackKey(CONTEXT, {}), null);
});

test("a fallback answer has the app's shape, honours k, exclude and the cart, and says why", () => {
  const body = { k: 2, exclude: ["de1"], context: { cart: ["de2"] } };
  const answer = answerFor({
    body,
    context: { ...CONTEXT, country: "" },
    reason: "the app answered 500",
    startedMs: 10,
    nowMs: 12.5,
  });
  assert.deepEqual(answer.items, [{ item_id: "m1", score: 2 }]);
  const german = answerFor({ body });
  assert.deepEqual(
    german.items.map((i) => i.item_id),
    ["a"],
  );
  assert.equal(answer.fallback, "gateway: the app answered 500");
  assert.equal(answer.bundle, CONTENT.bundle);
  assert.equal(answer.personalized, false);
  assert.equal(answer.took_ms, 2.5);
  assert.deepEqual(Object.keys(answer), RESPONSE_FIELDS);
});

test("without consent the cart is not used; k is capped at 100 and defaults to 10", () => {
  const all = { ...CONTEXT, country: "", device: "" };
  const answer = answerFor({ body: { consent: false, context: { cart: ["a"] } }, context: all });
  assert.deepEqual(
    answer.items.map((i) => i.item_id),
    ["a", "b", "c", "d"],
  );
  const many = { contexts: { all: Array.from({ length: 300 }, (_, i) => [`i${i}`, 1]) } };
  for (const [k, expected] of [
    [undefined, 10],
    [500, 100],
    [0, 10],
    ["5", 10],
    [3, 3],
  ]) {
    const got = answerFor({ content: many, body: { k }, context: all });
    assert.equal(got.items.length, expected, `k=${k}`);
  }
});

test("with no content published the answer is empty and says so, never an error", () => {
  const answer = answerFor({ content: null });
  assert.deepEqual(answer.items, []);
  assert.equal(answer.bundle, null);
  assert.match(answer.fallback, /no fallback content is published/);
});

test("a malformed request body is read as an empty one", () => {
  assert.deepEqual(parseRequestBody("not json"), {});
  assert.deepEqual(parseRequestBody("[1,2]"), {});
  assert.deepEqual(parseRequestBody("null"), {});
  assert.deepEqual(parseRequestBody('{"k": 3}'), { k: 3 });
});

test("fallback content of the wrong shape is refused with what is wrong", () => {
  assert.deepEqual(parseFallbackContent(JSON.stringify(CONTENT)), CONTENT);
  assert.throws(() => parseFallbackContent("{}"), /no 'contexts' object/);
  assert.throws(
    () => parseFallbackContent('{"contexts": {"all": [["a"]]}}'),
    /'all' is not a list/,
  );
  assert.throws(
    () => parseFallbackContent('{"contexts": {}, "hour_buckets": ["am", "pm"]}'),
    /hour buckets am,pm are not night,morning,afternoon,evening/,
  );
  assert.throws(() => parseFallbackContent("{"), SyntaxError);
});

test("content is read at most once per ttl and a failed read keeps the content before", async () => {
  let clock = 0;
  const reads = [
    async () => JSON.stringify(CONTENT),
    async () => {
      throw new Error("KV down");
    },
    async () => "{bad",
  ];
  let calls = 0;
  const logged = [];
  const current = contentCache(() => reads[calls++](), {
    ttlMs: 1000,
    now: () => clock,
    log: (m) => logged.push(m),
  });
  const [first, same] = await Promise.all([current(), current()]); // one read for both
  assert.equal(calls, 1);
  assert.equal(first, same);
  assert.equal((await current()).bundle, CONTENT.bundle);
  assert.equal(calls, 1);
  clock = 1500;
  assert.equal((await current()).bundle, CONTENT.bundle); // KV down: the old content
  clock = 3000;
  assert.equal((await current()).bundle, CONTENT.bundle); // malformed: the old content
  assert.equal(calls, 3);
  assert.equal(logged.length, 2);
  assert.match(logged[0], /KV down/);
});
