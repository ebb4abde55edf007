// The Worker's entry: the container that runs the Starlette app, and the gateway in front of it.
// Bindings (wrangler.toml): APP, the container; FALLBACK, the KV namespace with the fallback
// content; APP_ORIGIN, when set, an app served elsewhere (local tests, a self-hosted origin).

import { Container } from "@cloudflare/containers";
import { handle } from "./gateway.js";
import { contentCache } from "./fallback.js";
import { TRUST_CLIENT_HEADER_ENV } from "./headers.js";
import { pickInstance, poolSizes } from "./routing.js";
import { writeBatch } from "./queue.js";

const FALLBACK_KEY = "fallback"; // the KV key `edgeperso gateway-content` is put under

export class EdgeApp extends Container {
  defaultPort = 8080;
  sleepAfter = "15m";

  constructor(ctx, env) {
    super(ctx, env);
    // The container fetches its bundle at start and verifies its signature with the public key
    // (edge/fetch.py: it refuses an unsigned download), and counts quotas per visitor from the
    // gateway's x-edgeperso-client (worker/headers.js).
    this.envVars = {
      EDGEPERSO_BUNDLE_URL: env.BUNDLE_URL ?? "",
      // Followed while running (edge/bundle/remote.py); when set, BUNDLE_URL is not used.
      EDGEPERSO_BUNDLE_STORE: env.BUNDLE_STORE ?? "",
      EDGEPERSO_PUBLIC_KEY: env.BUNDLE_PUBLIC_KEY ?? "",
      // One key for every container: feedback reaching any of them verifies the decisions
      // another made (edge/decisions.py); a secret (`wrangler secret put DECISION_KEY`).
      EDGEPERSO_DECISION_KEY: env.DECISION_KEY ?? "",
      // Feedback leaves the container's ephemeral disk for an object store within seconds
      // (edge/shipping.py); unset, it stays on that disk (docs/deploy.md).
      EDGEPERSO_EVENTS_STORE: env.EVENTS_STORE ?? "",
      AWS_ENDPOINT_URL: env.STORE_ENDPOINT ?? "",
      AWS_ACCESS_KEY_ID: env.STORE_ACCESS_KEY_ID ?? "",
      AWS_SECRET_ACCESS_KEY: env.STORE_SECRET_ACCESS_KEY ?? "",
      ...TRUST_CLIENT_HEADER_ENV,
    };
  }
}

// The shop's own pages: SHOP_ORIGIN, when set, is where they come from (the gateway then fills
// their slots, worker/inject.js); unset, the gateway serves /v1/* alone.
function shopFetcher(env) {
  if (!env.SHOP_ORIGIN) return null;
  const origin = new URL(env.SHOP_ORIGIN);
  return (request) => {
    const url = new URL(request.url);
    url.protocol = origin.protocol;
    url.host = origin.host;
    return fetch(new Request(url, request), { redirect: "manual" });
  };
}

function appFetcher(env) {
  if (env.APP_ORIGIN) {
    const origin = new URL(env.APP_ORIGIN);
    return (request) => {
      const url = new URL(request.url);
      url.protocol = origin.protocol;
      url.host = origin.host;
      return fetch(new Request(url, request));
    };
  }
  // One pool of instances per region, each started near its visitors (worker/routing.js).
  return async (request, cf) => {
    const { name, locationHint } = pickInstance(cf, poolSizes(env));
    return env.APP.get(env.APP.idFromName(name), { locationHint }).fetch(request);
  };
}

let fallbackContent = null; // per isolate, shared by its requests

export default {
  async fetch(request, env, ctx) {
    fallbackContent ??= contentCache(() => env.FALLBACK.get(FALLBACK_KEY, { cacheTtl: 60 }));
    return handle(request, env, ctx, {
      app: appFetcher(env),
      shop: shopFetcher(env),
      HTMLRewriter: globalThis.HTMLRewriter,
      fallbackContent,
      now: () => performance.now(),
      wallClock: () => Date.now(),
      // Objects, so that Workers Logs indexes their fields.
      log: (entry) => console.error(entry),
    });
  },
  // The feedback queue's consumer (worker/queue.js), when one is configured.
  async queue(batch, env) {
    await writeBatch(batch, env);
  },
};
