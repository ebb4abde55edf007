import { test } from "node:test";
import assert from "node:assert/strict";
import { handle } from "../gateway.js";
import { DEFAULT_REGION, REGIONS, pickInstance, poolSizes, regionOf } from "../routing.js";

test("visitors map to the Durable Objects region near them", () => {
  const cases = [
    [{ continent: "NA", country: "US", longitude: "-122.4" }, "wnam"], // San Francisco
    [{ continent: "NA", country: "US", longitude: "-74.0" }, "enam"], // New York
    [{ continent: "NA", country: "MX" }, "enam"], // no longitude: the east
    [{ continent: "SA", country: "BR", longitude: "-46.6" }, "sam"],
    [{ continent: "EU", country: "FR", longitude: "2.35" }, "weur"],
    [{ continent: "EU", country: "PL", longitude: "21.0" }, "eeur"], // Warsaw
    [{ continent: "EU", country: "TR", longitude: "28.9" }, "me"], // by country first
    [{ continent: "AS", country: "AE", longitude: "55.3" }, "me"],
    [{ continent: "AS", country: "JP", longitude: "139.7" }, "apac"],
    [{ continent: "OC", country: "AU", longitude: "151.2" }, "oc"],
    [{ continent: "AF", country: "ZA", longitude: "18.4" }, "afr"],
    [{ continent: "AN" }, DEFAULT_REGION],
    [undefined, DEFAULT_REGION], // wrangler dev, a test: no cf at all
    [{ continent: 42, longitude: "west" }, DEFAULT_REGION], // nonsense is not a crash
  ];
  for (const [cf, region] of cases) assert.equal(regionOf(cf), region, JSON.stringify(cf));
});

test("pool sizes: one number everywhere, and per region where set", () => {
  assert.deepEqual(poolSizes({}), Object.fromEntries(REGIONS.map((r) => [r, 2])));
  const sizes = poolSizes({ APP_INSTANCES: "3", APP_INSTANCES_BY_REGION: "weur=5, afr=0" });
  assert.equal(sizes.weur, 5);
  assert.equal(sizes.afr, 0);
  assert.equal(sizes.apac, 3);
  for (const [env, message] of [
    [{ APP_INSTANCES: "two" }, /APP_INSTANCES must be a whole number from 0 to 1000, got "two"/],
    [{ APP_INSTANCES_BY_REGION: "mars=2" }, /region=count pairs .* regions among wnam/],
    [{ APP_INSTANCES_BY_REGION: "weur" }, /region=count pairs/],
    [{ APP_INSTANCES_BY_REGION: "weur=1.5" }, /APP_INSTANCES_BY_REGION's weur must be a whole/],
    [{ APP_INSTANCES: "0" }, /leaves no region with an instance/],
  ]) {
    assert.throws(() => poolSizes(env), message);
  }
});

test("each region's requests spread over its own instances, created with its hint", () => {
  const sizes = poolSizes({ APP_INSTANCES_BY_REGION: "weur=4" });
  const paris = { continent: "EU", country: "FR", longitude: "2.35" };
  const names = new Set();
  for (let i = 0; i < 400; i++) {
    const { name, locationHint } = pickInstance(paris, sizes);
    assert.equal(locationHint, "weur");
    names.add(name);
  }
  assert.deepEqual([...names].sort(), ["weur-0", "weur-1", "weur-2", "weur-3"]);
  const tokyo = pickInstance({ continent: "AS", country: "JP" }, sizes, () => 0.99);
  assert.deepEqual(tokyo, { name: "apac-1", locationHint: "apac" });
});

test("a region without instances is served by the default region's pool", () => {
  const sizes = poolSizes({ APP_INSTANCES_BY_REGION: "afr=0" });
  const lagos = pickInstance({ continent: "AF", country: "NG" }, sizes, () => 0);
  assert.deepEqual(lagos, { name: `${DEFAULT_REGION}-0`, locationHint: DEFAULT_REGION });
  const only = poolSizes({ APP_INSTANCES: "0", APP_INSTANCES_BY_REGION: "apac=1" });
  assert.equal(pickInstance({ continent: "EU" }, only).name, "apac-0");
});

test("the gateway routes by the visitor's place, and a bad pool setting falls back by name", async () => {
  const asked = [];
  const deps = (env) => ({
    // What worker/index.js does with the stub, minus the Durable Object itself.
    app: async (request, cf) => {
      asked.push(pickInstance(cf, poolSizes(env)).name);
      return new Response(JSON.stringify({ items: [] }), {
        headers: { "content-type": "application/json" },
      });
    },
    fallbackContent: async () => ({ bundle: "b", contexts: { all: [["a", 1]] } }),
    now: () => performance.now(),
    wallClock: () => Date.now(),
    log: () => {},
  });
  const ctx = { waitUntil: () => {} };
  const request = (cf) => {
    const r = new Request("https://shop.example/v1/recommend", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    Object.defineProperty(r, "cf", { value: cf });
    return r;
  };
  const env = { APP_BUDGET_MS: "500", APP_INSTANCES: "1" };
  await handle(request({ continent: "OC", country: "NZ" }), env, ctx, deps(env));
  assert.deepEqual(asked, ["oc-0"]);
  const bad = { APP_BUDGET_MS: "500", APP_INSTANCES_BY_REGION: "moon=1" };
  const answer = await (await handle(request({}), bad, ctx, deps(bad))).json();
  assert.match(answer.fallback, /misconfigured: APP_INSTANCES_BY_REGION must be region=count/);
});
