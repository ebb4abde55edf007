import { test } from "node:test";
import assert from "node:assert/strict";
import { handle, positiveVar, readBudgets, DEFAULT_BUDGET_MS, MAX_BODY_BYTES } from "../gateway.js";

const CONTENT = {
  bundle: "b1",
  contexts: {
    all: [
      ["a", 3],
      ["b", 2],
      ["c", 1],
    ],
  },
};

// A gateway with a fake app: `app` gets the forwarded Request and returns what the app would.
function gateway(app, { env = {}, content = CONTENT } = {}) {
  const background = [];
  const logged = [];
  const deps = {
    app: async (request) => app(request),
    fallbackContent: async () => content,
    now: () => performance.now(),
    wallClock: () => Date.now(),
    log: (m) => logged.push(m),
  };
  const ctx = { waitUntil: (promise) => background.push(promise) };
  const call = (path, init = {}) =>
    handle(
      new Request(`https://shop.example${path}`, init),
      { APP_BUDGET_MS: "50", ...env },
      ctx,
      deps,
    );
  return { call, background, logged };
}

const post = (body, headers = {}) => ({
  method: "POST",
  headers: { "content-type": "application/json", ...headers },
  body: typeof body === "string" ? body : JSON.stringify(body),
});

const appJson = (status, payload) =>
  new Response(JSON.stringify(payload), {
    status,
    headers: { "content-type": "application/json" },
  });

test("the app's answer passes through, with the CDN's context headers and the body forwarded", async () => {
  let seen;
  const { call } = gateway(async (request) => {
    seen = {
      headers: Object.fromEntries(request.headers),
      body: await request.text(),
      url: request.url,
    };
    return appJson(200, { items: [], fallback: null });
  });
  const response = await call(
    "/v1/recommend?x=1",
    post({ k: 2 }, { "user-agent": "Mozilla/5.0 (iPhone) Mobile", "x-edgeperso-country": "fr" }),
  );
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-edgeperso-source"), "app");
  assert.deepEqual(await response.json(), { items: [], fallback: null });
  assert.equal(seen.url, "https://shop.example/v1/recommend?x=1");
  assert.equal(seen.body, '{"k":2}');
  assert.equal(seen.headers["x-edgeperso-device"], "mobile");
  assert.equal(seen.headers["x-edgeperso-country"], undefined); // the client's claim is dropped
});

test("the app's own 4xx errors pass through unchanged: they say what was wrong", async () => {
  const { call } = gateway(() =>
    appJson(422, { error: { code: "invalid_request", message: "k" } }),
  );
  const response = await call("/v1/recommend", post({ k: 0 }));
  assert.equal(response.status, 422);
  assert.equal((await response.json()).error.code, "invalid_request");
});

test("a slow app: fallback content within the budget, and the call is left to finish", async () => {
  let finish;
  const { call, background } = gateway(
    () => new Promise((resolve) => (finish = () => resolve(appJson(200, {})))),
  );
  const started = performance.now();
  const response = await call("/v1/recommend", post({ k: 2, exclude: ["a"] }));
  const took = performance.now() - started;
  const answer = await response.json();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-edgeperso-source"), "gateway-fallback");
  assert.equal(answer.fallback, "gateway: the app did not answer within 50 ms");
  assert.deepEqual(
    answer.items.map((i) => i.item_id),
    ["b", "c"],
  );
  assert.equal(answer.bundle, "b1");
  assert.ok(took >= 45 && took < 1000, `answered after ${took} ms`);
  assert.equal(background.length, 1); // a cold container keeps starting
  finish();
  await Promise.all(background);
});

test("a failing or unreachable app gets fallback content, never a blank page", async () => {
  for (const [app, reason] of [
    [() => new Response("", { status: 500 }), "the app answered 500"],
    [() => appJson(503, { error: { code: "bundle_unavailable" } }), "the app answered 503"],
    [
      () => Promise.reject(new TypeError("connection refused")),
      "the app is unreachable (connection refused)",
    ],
    [
      () => {
        throw new Error("stub broke");
      },
      "the app is unreachable (stub broke)",
    ],
  ]) {
    const { call } = gateway(app);
    const response = await call("/v1/recommend", post("not json at all"));
    assert.equal(response.status, 200);
    const answer = await response.json();
    assert.equal(answer.fallback, `gateway: ${reason}`);
    assert.equal(answer.items.length, 3);
  }
});

test("events: the app's JSON errors pass through; a gateway 503 asks for the batch again", async () => {
  const sink = gateway(() =>
    appJson(503, { error: { code: "event_sink_unavailable", message: "m" } }),
  );
  const refused = await sink.call("/v1/events", post({ events: [] }));
  assert.equal(refused.status, 503);
  assert.equal((await refused.json()).error.code, "event_sink_unavailable");

  const down = gateway(() => Promise.reject(new TypeError("connection refused")));
  const response = await down.call("/v1/events", post({ events: [] }));
  assert.equal(response.status, 503);
  assert.equal(response.headers.get("retry-after"), "1");
  const { error } = await response.json();
  assert.equal(error.code, "app_unavailable");
  assert.match(error.message, /send the same request again/);

  const html = gateway(
    () => new Response("<h1>oops</h1>", { status: 502, headers: { "content-type": "text/html" } }),
  );
  const replaced = await html.call("/v1/events", post({ events: [] }));
  assert.equal(replaced.status, 503);
  assert.equal((await replaced.json()).error.code, "app_unavailable");
});

test("only /v1/* is routed, and oversized bodies are refused with the limit", async () => {
  const { call } = gateway(() => appJson(200, {}));
  const missing = await call("/admin");
  assert.equal(missing.status, 404);
  assert.match((await missing.json()).error.message, /serves \/v1\/\*/);
  const big = await call("/v1/events", {
    method: "POST",
    headers: { "content-length": String(MAX_BODY_BYTES + 1) },
    body: "x",
  });
  assert.equal(big.status, 413);
  assert.match((await big.json()).error.message, /at most 2097152/);
});

test("budgets come from the Worker's variables and bad ones are refused by name", async () => {
  assert.deepEqual(readBudgets({}), { recommend: DEFAULT_BUDGET_MS, other: 2000 });
  assert.deepEqual(readBudgets({ APP_BUDGET_MS: "80", EVENTS_BUDGET_MS: "500" }), {
    recommend: 80,
    other: 500,
  });
  assert.throws(
    () => readBudgets({ APP_BUDGET_MS: "fast" }),
    /APP_BUDGET_MS must be a positive number/,
  );
  assert.equal(positiveVar({ APP_INSTANCES: "4" }, "APP_INSTANCES", 3, { integer: true }), 4);
  assert.throws(
    () => positiveVar({ APP_INSTANCES: "2.5" }, "APP_INSTANCES", 3, { integer: true }),
    /APP_INSTANCES must be a positive whole number, got "2.5"/,
  );
  // Misconfigured, a recommendation still gets fallback content, and says why.
  const { call } = gateway(() => appJson(200, {}), { env: { APP_BUDGET_MS: "-1" } });
  const answer = await (await call("/v1/recommend", post({}))).json();
  assert.match(answer.fallback, /misconfigured: APP_BUDGET_MS must be a positive number/);
  assert.equal(answer.items.length, 3);
});
