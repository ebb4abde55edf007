import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  contextHeaders,
  deviceFromUserAgent,
  hourBucket,
  localHour,
  resolveContext,
} from "../context.js";

// The same vectors edge/context.py is checked against (tests/edge/test_context.py).
const cases = JSON.parse(readFileSync(new URL("../../tests/cases/context.json", import.meta.url)));

test("devices agree with the shared vectors", () => {
  for (const { user_agent, device } of cases.user_agents) {
    assert.equal(deviceFromUserAgent(user_agent), device, user_agent);
  }
});

test("local hours agree with the shared vectors", () => {
  for (const { timezone, epoch, local_hour } of cases.timezones) {
    assert.equal(localHour(timezone, epoch * 1000), local_hour, `${timezone} at ${epoch}`);
  }
});

test("hour buckets agree with the shared vectors", () => {
  for (const { hour, bucket } of cases.hour_buckets) assert.equal(hourBucket(hour), bucket);
});

test("context headers come from request.cf and the User-Agent, not from the client", () => {
  const request = new Request("https://shop.example/v1/recommend", {
    headers: {
      "user-agent": cases.user_agents[0].user_agent,
      "x-edgeperso-country": "fr", // the client's own claim: replaced
    },
  });
  Object.defineProperty(request, "cf", { value: { country: "DE", timezone: "Europe/Berlin" } });
  assert.deepEqual(contextHeaders(request), {
    "x-edgeperso-country": "de",
    "x-edgeperso-timezone": "Europe/Berlin",
    "x-edgeperso-device": cases.user_agents[0].device,
  });
  const bare = new Request("https://shop.example/v1/recommend");
  assert.deepEqual(contextHeaders(bare), {
    "x-edgeperso-country": "",
    "x-edgeperso-timezone": "",
    "x-edgeperso-device": "",
  });
});

test("the body wins over headers, headers fill the rest, as in the app", () => {
  const july = Date.UTC(2023, 6, 14, 12);
  const headers = {
    "x-edgeperso-country": "de",
    "x-edgeperso-timezone": "Asia/Tokyo",
    "x-edgeperso-device": "mobile",
  };
  assert.deepEqual(resolveContext({ device: " Tablet ", local_hour: 7 }, headers, july), {
    device: "tablet",
    country: "de",
    local_hour: 7,
    hour_bucket: "morning",
    page: null,
  });
  assert.equal(resolveContext({}, headers, july).local_hour, 21);
  // An out-of-range hour in the body is ignored (the app would refuse the request with a 422).
  assert.equal(resolveContext({ local_hour: 30 }, {}, july).local_hour, 12);
});
