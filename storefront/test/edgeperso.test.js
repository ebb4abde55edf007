import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { assign, bucket, buildRequest } from "../edgeperso.js";

const read = (name) =>
  JSON.parse(readFileSync(new URL(`../../tests/cases/${name}`, import.meta.url)));

// The same vectors edge/experiments.py is checked against (tests/edge/test_experiments.py).
const assignment = read("assignment.json");
// The app reads these bodies back in tests/storefront/test_request_vectors.py.
const requests = read("storefront_request.json");

test("experiment buckets and variants agree with the edge's", async () => {
  const byKey = Object.fromEntries(assignment.experiments.map((e) => [e.key, e]));
  assert.ok(assignment.cases.length >= 10);
  for (const c of assignment.cases) {
    const experiment = byKey[c.experiment];
    assert.equal(await assign(experiment, c.unit_id), c.variant, `${c.experiment}:${c.unit_id}`);
    if (c.bucket !== undefined) {
      assert.ok(Math.abs((await bucket(c.experiment, c.unit_id)) - c.bucket) < 1e-9);
    }
  }
});

test("the request for each visit is the one the app reads as meant", () => {
  for (const c of requests.cases) {
    assert.deepEqual(buildRequest(c.visit, c.options), c.request, c.name);
  }
});

test("only the newest 50 events go with a request", () => {
  const events = Array.from({ length: 70 }, (_, i) => ({ type: "view", item_id: `i${i}` }));
  const visit = { id: "s", visitor: "v", visitsSincePurchase: 2, cart: [], rulesShown: [], events };
  const body = buildRequest(visit, { context: {}, k: 4 });
  assert.equal(body.session.events.length, 50);
  assert.equal(body.session.events[0].item_id, "i20");
  assert.equal(events[69].dwell_ms, undefined, "the visit's own events are not changed");
});
