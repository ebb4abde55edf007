// The Worker's entry: the container that runs the Starlette app, and the gateway in front of it.
// Bindings (wrangler.toml): APP, the container; FALLBACK, the KV namespace with the fallback
// content; APP_ORIGIN, when set, an app served elsewhere (local tests, a self-hosted origin).

import { Container, getRandom } from "@cloudflare/containers";
import { handle, positiveVar } from "./gateway.js";
import { contentCache } from "./fallback.js";

const FALLBACK_KEY = "fallback"; // the KV key `edgeperso gateway-content` is put under

export class EdgeApp extends Container {
  defaultPort = 8080;
  sleepAfter = "15m";

  constructor(ctx, env) {
    super(ctx, env);
    // The container fetches and verifies its bundle at start (edge/fetch.py).
    this.envVars = { EDGEPERSO_BUNDLE_URL: env.BUNDLE_URL ?? "" };
  }
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
  return async (request) => {
    const instances = positiveVar(env, "APP_INSTANCES", 3, { integer: true });
    return (await getRandom(env.APP, instances)).fetch(request);
  };
}

let fallbackContent = null; // per isolate, shared by its requests

export default {
  async fetch(request, env, ctx) {
    fallbackContent ??= contentCache(() => env.FALLBACK.get(FALLBACK_KEY, { cacheTtl: 60 }));
    return handle(request, env, ctx, {
      app: appFetcher(env),
      fallbackContent,
      now: () => performance.now(),
      wallClock: () => Date.now(),
      log: (message) => console.error(message),
    });
  },
};
