import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  appHeaders,
  CLIENT_HEADER,
  connectingIp,
  isDropped,
  TRUST_CLIENT_HEADER_ENV,
} from "../headers.js";

const request = (headers, cf) => {
  const made = new Request("https://shop.example/v1/events", { headers });
  if (cf) Object.defineProperty(made, "cf", { value: cf });
  return made;
};

test("Cloudflare's, a proxy's and the gateway's header names are dropped, in any case", () => {
  for (const name of [
    "cf-ipcountry",
    "CF-Connecting-IP",
    "cf-ray",
    "x-forwarded-for",
    "X-Forwarded-Proto",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-edgeperso-client",
    "X-EdgePerso-Country",
  ]) {
    assert.equal(isDropped(name), true, name);
  }
  for (const name of ["user-agent", "content-type", "accept-language", "x-cfg", "cookie"]) {
    assert.equal(isDropped(name), false, name);
  }
});

test("the connecting IP is Cloudflare's header when it holds one address", () => {
  assert.equal(connectingIp(request({ "cf-connecting-ip": "192.0.2.1" })), "192.0.2.1");
  assert.equal(connectingIp(request({ "cf-connecting-ip": "2001:db8::1" })), "2001:db8::1");
  assert.equal(
    connectingIp(request({ "cf-connecting-ip": "::ffff:192.0.2.1" })),
    "::ffff:192.0.2.1",
  );
  for (const value of ["", "unknown", "192.0.2.1, 192.0.2.2", "192.0.2", "a".repeat(46)]) {
    assert.equal(connectingIp(request({ "cf-connecting-ip": value })), null, value);
  }
  assert.equal(connectingIp(request({ "x-real-ip": "192.0.2.1" })), null);
});

test("the app's headers: the client's kept ones plus what the gateway knows, nothing empty", () => {
  const headers = appHeaders(
    request(
      {
        "user-agent": "Mozilla/5.0 (iPad)",
        "cf-connecting-ip": "192.0.2.1",
        "cf-ipcountry": "FR",
        "x-edgeperso-country": "fr",
        "accept-language": "de",
      },
      { country: "AT", timezone: "Europe/Vienna" },
    ),
  );
  assert.deepEqual(Object.fromEntries(headers), {
    "accept-language": "de",
    "user-agent": "Mozilla/5.0 (iPad)",
    "x-edgeperso-client": "192.0.2.1",
    "x-edgeperso-country": "at",
    "x-edgeperso-device": "tablet",
    "x-edgeperso-timezone": "Europe/Vienna",
  });
  assert.deepEqual(Object.fromEntries(appHeaders(request({ "cf-ipcountry": "FR" }))), {});
});

test("the container is told to trust the client header, by the names the app reads", () => {
  const source = (path) => readFileSync(new URL(`../../${path}`, import.meta.url), "utf8");
  const [[name, value]] = Object.entries(TRUST_CLIENT_HEADER_ENV);
  assert.match(source("edge/config.py"), new RegExp(`"${name}", cast=bool`));
  assert.equal(value, "true"); // one of the strings Starlette's Config reads as True
  assert.match(source("edge/quota.py"), new RegExp(`CLIENT_HEADER = "${CLIENT_HEADER}"`));
});

test("the ray id reaches the app as the gateway's request id, and a client's never does", () => {
  const request = new Request("https://shop.example/v1/recommend", {
    headers: { "cf-ray": "8c0f1a2b3c4d5e6f-FRA", "x-edgeperso-request-id": "forged" },
  });
  assert.equal(appHeaders(request).get("x-edgeperso-request-id"), "8c0f1a2b3c4d5e6f-FRA");
  const odd = new Request("https://shop.example/", {
    headers: { "cf-ray": "not a ray", "x-edgeperso-request-id": "forged" },
  });
  assert.equal(appHeaders(odd).get("x-edgeperso-request-id"), null);
});
