import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
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
  // `cf` stands for what Cloudflare knows of the request (`request.cf`, set by the runtime).
  const call = (path, init = {}, cf = undefined) => {
    const request = new Request(`https://shop.example${path}`, init);
    if (cf) Object.defineProperty(request, "cf", { value: cf });
    return handle(request, { APP_BUDGET_MS: "50", ...env }, ctx, deps);
  };
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
  const [{ ms, ...entry }] = sink.logged;
  assert.deepEqual(entry, {
    event: "app_failed",
    method: "POST",
    path: "/v1/events",
    answered: 503,
    status: 503,
    ray: null, // no cf-ray on a local request
  });
  assert.ok(Number.isInteger(ms) && ms >= 0);

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

// A body sent in chunks with no content-length, as a chunked upload arrives. `sent()` counts the
// bytes the reader has pulled from the client so far; `cancelled()` says whether it gave up.
function chunkedBody(totalBytes, chunkBytes = 64 * 1024) {
  let sent = 0;
  let cancelled = false;
  const stream = new ReadableStream(
    {
      pull(controller) {
        if (sent >= totalBytes) return controller.close();
        const size = Math.min(chunkBytes, totalBytes - sent);
        controller.enqueue(new Uint8Array(size).fill(0x20));
        sent += size;
      },
      cancel() {
        cancelled = true;
      },
    },
    { highWaterMark: 0 }, // pulled only when read
  );
  return { stream, sent: () => sent, cancelled: () => cancelled };
}

const streamed = (stream) => ({
  method: "POST",
  headers: { "content-type": "application/json" },
  body: stream,
  duplex: "half",
});

test("a body streamed without a content-length is cut off past the limit with the same 413", async () => {
  for (const path of ["/v1/events", "/v1/recommend"]) {
    let asked = false;
    const { call } = gateway(() => {
      asked = true;
      return appJson(200, {});
    });
    const body = chunkedBody(4 * MAX_BODY_BYTES);
    const response = await call(path, streamed(body.stream));
    assert.equal(response.status, 413, path);
    assert.equal(response.headers.get("content-type"), "application/json");
    const { error } = await response.json();
    assert.equal(error.code, "payload_too_large");
    assert.match(error.message, /at most 2097152 bytes are allowed/);
    assert.equal(asked, false, "the app is not asked");
    // Reading stops at the first chunk past the limit and the rest is never pulled.
    assert.ok(body.sent() <= MAX_BODY_BYTES + 2 * 64 * 1024, `${body.sent()} bytes pulled`);
    assert.equal(body.cancelled(), true);
  }
});

test("a streamed body of exactly the limit is accepted, one byte more is not", async () => {
  let received = 0;
  const { call } = gateway(async (request) => {
    received = (await request.arrayBuffer()).byteLength;
    return appJson(200, {});
  });
  const atLimit = await call("/v1/events", streamed(chunkedBody(MAX_BODY_BYTES).stream));
  assert.equal(atLimit.status, 200);
  assert.equal(received, MAX_BODY_BYTES);
  const over = await call("/v1/events", streamed(chunkedBody(MAX_BODY_BYTES + 1).stream));
  assert.equal(over.status, 413);
});

test("a streamed body reaches the app byte for byte, a character split across chunks too", async () => {
  let seen;
  const { call } = gateway(async (request) => {
    seen = new Uint8Array(await request.arrayBuffer());
    return appJson(200, {});
  });
  const bytes = new TextEncoder().encode(JSON.stringify({ events: [], note: "é".repeat(40_000) }));
  const cuts = [0, 22, 50_001, bytes.length]; // 22 falls inside the first "é"
  const stream = new ReadableStream({
    start(controller) {
      for (let i = 1; i < cuts.length; i++) controller.enqueue(bytes.slice(cuts[i - 1], cuts[i]));
      controller.close();
    },
  });
  const response = await call("/v1/events", streamed(stream));
  assert.equal(response.status, 200);
  assert.deepEqual(seen, bytes);
});

// The request headers the app reads (edge/context.py), found in its source so that a header it
// starts reading is covered here too.
const APP_READS = [
  ...readFileSync(new URL("../../edge/context.py", import.meta.url), "utf8").matchAll(
    /headers\.get\("([^"]+)"\)/g,
  ),
].map((match) => match[1]);

test("every header the app reads reaches it with the gateway's value, never the client's", async () => {
  assert.ok(APP_READS.includes("cf-ipcountry") && APP_READS.includes("x-edgeperso-timezone"));
  const claimed = APP_READS.filter((name) => name !== "user-agent"); // the device comes from it
  const spoofed = Object.fromEntries(claimed.map((name) => [name, `spoofed-${name}`]));
  let seen;
  const { call } = gateway((request) => {
    seen = request.headers;
    return appJson(200, {});
  });
  const iphone = "Mozilla/5.0 (iPhone) Mobile";
  await call("/v1/recommend", post({}, { ...spoofed, "user-agent": iphone }), {
    country: "DE",
    timezone: "Europe/Berlin",
  });
  for (const name of claimed) assert.notEqual(seen.get(name), spoofed[name], name);
  assert.equal(seen.get("x-edgeperso-country"), "de");
  assert.equal(seen.get("x-edgeperso-timezone"), "Europe/Berlin");
  assert.equal(seen.get("x-edgeperso-device"), "mobile");
  assert.equal(seen.get("user-agent"), iphone);
  assert.equal(seen.get("cf-ipcountry"), null);
  assert.equal(seen.get("cf-timezone"), null);

  // Where Cloudflare knows nothing, the app hears nothing: no client claim fills the gap.
  await call("/v1/recommend", post({}, spoofed));
  for (const name of claimed) assert.equal(seen.get(name), null, name);
});

test("cf-*, forwarding and x-edgeperso-* headers a client sends are dropped; the rest pass", async () => {
  let seen;
  const { call } = gateway((request) => {
    seen = Object.fromEntries(request.headers);
    return appJson(200, {});
  });
  const sent = {
    "cf-connecting-ip": "203.0.113.7", // what Cloudflare's edge sets on the request
    "cf-ray": "8f0000000000-FRA",
    "cf-ipcountry": "FR",
    "cf-timezone": "Asia/Tokyo",
    "cf-visitor": '{"scheme":"https"}',
    "x-forwarded-for": "198.51.100.1",
    "x-forwarded-proto": "http",
    "x-forwarded-host": "evil.example",
    "x-real-ip": "198.51.100.2",
    forwarded: "for=198.51.100.3;proto=http",
    "true-client-ip": "198.51.100.4",
    "x-edgeperso-client": "198.51.100.5",
    "x-edgeperso-segment": "vip",
    "accept-language": "de-DE",
    "x-shop-page": "home",
  };
  await call("/v1/events", post({ events: [] }, sent), {
    country: "DE",
    timezone: "Europe/Berlin",
  });
  const names = Object.keys(seen);
  assert.deepEqual(
    names.filter((name) => /^(cf-|x-forwarded-)/.test(name)),
    [],
  );
  for (const name of ["x-real-ip", "forwarded", "true-client-ip"])
    assert.equal(seen[name], undefined);
  assert.deepEqual(names.filter((name) => name.startsWith("x-edgeperso-")).sort(), [
    "x-edgeperso-client",
    "x-edgeperso-country",
    "x-edgeperso-timezone",
  ]);
  assert.equal(seen["x-edgeperso-client"], "203.0.113.7");
  assert.equal(seen["accept-language"], "de-DE");
  assert.equal(seen["x-shop-page"], "home");
  assert.equal(seen["content-type"], "application/json");
});

test("the client identity is only ever Cloudflare's connecting IP, and only an address", async () => {
  let seen;
  const { call } = gateway((request) => {
    seen = request.headers.get("x-edgeperso-client");
    return appJson(200, {});
  });
  for (const [sent, expected] of [
    [{ "cf-connecting-ip": "2001:db8::1" }, "2001:db8::1"],
    [{ "cf-connecting-ip": " 192.0.2.1 " }, "192.0.2.1"],
    [{ "cf-connecting-ip": "192.0.2.1, 198.51.100.1" }, null], // not one address: not passed
    [{ "cf-connecting-ip": "<script>" }, null],
    [{ "x-forwarded-for": "198.51.100.1", "x-real-ip": "198.51.100.2" }, null],
  ]) {
    await call("/v1/events", post({ events: [] }, sent));
    assert.equal(seen, expected, JSON.stringify(sent));
  }
});

test("a fallback answer's context is Cloudflare's, not the client's headers", async () => {
  const content = {
    bundle: "b1",
    contexts: { "country=de": [["de1", 1]], "country=fr": [["fr1", 1]], all: [["a", 1]] },
  };
  const { call } = gateway(() => Promise.reject(new TypeError("down")), { content });
  const response = await call(
    "/v1/recommend",
    post({}, { "cf-ipcountry": "FR", "x-edgeperso-country": "fr" }),
    { country: "DE" },
  );
  const answer = await response.json();
  assert.equal(answer.context.country, "de");
  assert.deepEqual(
    answer.items.map((item) => item.item_id),
    ["de1"],
  );
});

// An answer with any body and content-type (none when `type` is null).
const appText = (status, text, type) =>
  new Response(typeof text === "string" ? new TextEncoder().encode(text) : text, {
    status,
    headers: type ? { "content-type": type } : {},
  });

test("events: an app answer that is not JSON becomes a JSON 502, logged without body or IP", async () => {
  for (const [answer, status, problem] of [
    [
      appText(200, "<h1>secret</h1>", "text/html; charset=utf-8"),
      200,
      /not JSON \(content-type text\/html/,
    ],
    [appText(200, '{"secret": [', "application/json"), 200, /JSON that does not parse/],
    [appText(200, new Uint8Array([0x22, 0xff, 0x22]), "application/json"), 200, /does not parse/],
    [appText(400, "secret request", "text/plain"), 400, /not JSON \(content-type text\/plain\)/],
    [appText(404, "secret", null), 404, /not JSON \(no content-type\)/],
  ]) {
    const { call, logged } = gateway(() => answer);
    const response = await call(
      "/v1/events?session=secret",
      post(
        { events: [] },
        {
          "cf-connecting-ip": "203.0.113.7",
        },
      ),
    );
    assert.equal(response.status, 502, String(problem));
    assert.equal(response.headers.get("content-type"), "application/json");
    assert.equal(response.headers.get("x-edgeperso-source"), "gateway");
    const { error } = await response.json();
    assert.equal(error.code, "bad_app_answer");
    assert.match(error.message, new RegExp(`the app answered ${status} with`));
    assert.match(error.message, problem);
    assert.match(error.message, /send the same request again/);
    const [entry] = logged;
    assert.equal(logged.length, 1);
    assert.equal(typeof entry, "object", "a structured entry, not a line of text");
    assert.deepEqual(
      { event: entry.event, method: entry.method, path: entry.path, status: entry.status },
      { event: "app_answer_not_json", method: "POST", path: "/v1/events", status },
    );
    assert.equal(entry.answered, 502);
    assert.match(entry.problem, problem);
    const text = JSON.stringify(logged);
    assert.ok(!/secret|203\.0\.113\.7/.test(text), text);
  }
});

test("recommend: an app answer that is not JSON gets fallback content, and is logged", async () => {
  for (const answer of [
    appText(200, "<html>login</html>", "text/html"),
    appText(200, "{", "application/json"),
    appText(429, "slow down", "text/plain"),
  ]) {
    const { call, logged } = gateway(() => answer);
    const response = await call("/v1/recommend", post({ k: 2 }));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-edgeperso-source"), "gateway-fallback");
    const body = await response.json();
    assert.match(body.fallback, /^gateway: the app answered (200|429) with /);
    assert.equal(body.items.length, 2);
    assert.equal(logged[0].event, "app_answer_not_json");
    assert.equal(logged[0].answered, "fallback");
  }
});

test("a 5xx whose JSON does not parse is not passed on: events get the 503 to retry", async () => {
  const { call } = gateway(() => appText(503, '{"error": ', "application/json"));
  const response = await call("/v1/events", post({ events: [] }));
  assert.equal(response.status, 503);
  assert.equal((await response.json()).error.code, "app_unavailable");
});

test("an app answer over the limit is not read whole: a 502 for events", async () => {
  const body = chunkedBody(4 * MAX_BODY_BYTES);
  const { call } = gateway(
    () => new Response(body.stream, { headers: { "content-type": "application/json" } }),
  );
  const response = await call("/v1/events", post({ events: [] }));
  assert.equal(response.status, 502);
  assert.match((await response.json()).error.message, /a body over 2097152 bytes/);
  assert.ok(body.sent() <= MAX_BODY_BYTES + 2 * 64 * 1024, `${body.sent()} bytes pulled`);
  assert.equal(body.cancelled(), true);
});

test("the budget covers the app's whole answer: a body still arriving gets fallback content", async () => {
  let finish;
  const { call, background } = gateway(() => {
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"items": '));
        finish = () => {
          controller.enqueue(new TextEncoder().encode("[]}"));
          controller.close();
        };
      },
    });
    return new Response(stream, { headers: { "content-type": "application/json" } });
  });
  const response = await call("/v1/recommend", post({ k: 1 }));
  const answer = await response.json();
  assert.equal(response.headers.get("x-edgeperso-source"), "gateway-fallback");
  assert.equal(answer.fallback, "gateway: the app did not answer within 50 ms");
  assert.equal(background.length, 1);
  finish();
  await Promise.all(background);
});

test("HEAD: the app's answer has no body to check and passes as it is", async () => {
  const { call } = gateway(
    () =>
      new Response(null, {
        status: 405,
        headers: { "content-type": "application/json", allow: "POST" },
      }),
  );
  const response = await call("/v1/events", { method: "HEAD" });
  assert.equal(response.status, 405);
  assert.equal(response.headers.get("allow"), "POST");
  assert.equal(response.headers.get("x-edgeperso-source"), "app");
});

// ---------------------------------------------------------------- the shop's pages
const PAGE_WITH_SLOT =
  '<html><body><div data-edgeperso-slot="items" data-edgeperso-template="t">default</div>' +
  '<template data-edgeperso-template="t"><a>{{item_id}}</a></template></body></html>';

function shopGateway(origin, app, env = {}) {
  const logged = [];
  let asked = 0;
  const deps = {
    app: async (request) => {
      asked += 1;
      return app(request);
    },
    shop: async (request) => origin(request),
    fallbackContent: async () => CONTENT,
    now: () => performance.now(),
    wallClock: () => Date.now(),
    log: (m) => logged.push(m),
    HTMLRewriter: undefined, // never reached here: filling runs under workerd (tests/test_storefront.py)
  };
  const ctx = { waitUntil: () => {} };
  const call = (path, init = {}) =>
    handle(
      new Request(`https://shop.example${path}`, init),
      { APP_BUDGET_MS: "50", ...env },
      ctx,
      deps,
    );
  return { call, logged, asked: () => asked };
}

const html = (body, status = 200, type = "text/html; charset=utf-8") =>
  new Response(body, { status, headers: { "content-type": type, etag: '"v1"' } });

test("pages go through as the origin sent them when there is nothing to fill", async () => {
  const never = async () => assert.fail("the app is not asked");
  const cases = [
    ["/logo.png", {}, () => new Response("PNG", { headers: { "content-type": "image/png" } })],
    ["/form", { method: "POST", body: "a=1" }, () => html(PAGE_WITH_SLOT)],
    ["/gone", {}, () => html(PAGE_WITH_SLOT, 404)],
    ["/plain", {}, () => html("<html><body>no slot</body></html>")],
  ];
  for (const [path, init, origin] of cases) {
    const { call } = shopGateway(origin, never);
    const response = await call(path, init);
    const expected = await origin().text();
    assert.equal(await response.text(), expected, path);
    assert.equal(response.headers.get("x-edgeperso-filled"), null, path);
  }
});

test("a page the app cannot answer for in time, or only with fallback, goes through untouched", async () => {
  const late = () => new Promise((resolve) => setTimeout(() => resolve(appJson(200, {})), 200));
  const fallback = () =>
    appJson(200, { items: [{ item_id: "a", score: 0 }], fallback: "latency_budget" });
  for (const [app, why] of [
    [late, "timed out"],
    [() => Promise.reject(new Error("refused")), "unreachable"],
    [() => appJson(500, { error: {} }), "failed"],
    [fallback, "fallback"],
  ]) {
    const { call, logged, asked } = shopGateway(() => html(PAGE_WITH_SLOT), app);
    const response = await call("/");
    assert.equal(await response.text(), PAGE_WITH_SLOT, why);
    assert.equal(asked(), 1);
    assert.equal(response.headers.get("etag"), '"v1"', "as it came, validators and all");
    assert.deepEqual(
      logged.map((m) => [m.event, m.why]),
      [["page_not_filled", why]],
    );
  }
});

test("a page over the size the gateway holds streams through untouched", async () => {
  const big = PAGE_WITH_SLOT + " ".repeat(2 * 1024 * 1024);
  const { call, asked } = shopGateway(
    () => html(big),
    () => assert.fail("not asked"),
  );
  const response = await call("/");
  assert.equal((await response.text()).length, big.length);
  assert.equal(asked(), 0);
});

test("without SHOP_ORIGIN the gateway serves /v1/* alone and says how to change that", async () => {
  const { call } = gateway(async () => assert.fail("not asked"));
  const response = await call("/index.html");
  assert.equal(response.status, 404);
  assert.match((await response.json()).error.message, /set SHOP_ORIGIN/);
});

test("a page the gateway fails to fill is still the shop's page, never an error", async () => {
  const answer = () => appJson(200, { items: [{ item_id: "a", score: 1 }], fallback: null });
  // No HTMLRewriter here (it is workerd's): filling throws, as any failure of it would.
  const { call, logged } = shopGateway(() => html(PAGE_WITH_SLOT), answer);
  const response = await call("/");
  assert.equal(response.status, 200);
  assert.equal(await response.text(), PAGE_WITH_SLOT);
  assert.deepEqual(
    logged.map((m) => [m.event, m.why]),
    [["page_not_filled", "error"]],
  );
  // A budget that is no number: the setting is named in the log, the page still served.
  const misconfigured = shopGateway(() => html(PAGE_WITH_SLOT), answer, { APP_BUDGET_MS: "soon" });
  assert.equal(await (await misconfigured.call("/")).text(), PAGE_WITH_SLOT);
  assert.match(misconfigured.logged[0].error, /APP_BUDGET_MS must be/);
});
