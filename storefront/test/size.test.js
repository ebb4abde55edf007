import { test } from "node:test";
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { buildSync } from "esbuild";

// What a page downloads: the module minified and gzipped (docs/storefront.md, "Size").
const BUDGET_BYTES = 6 * 1024;

test(`edgeperso.js is under ${BUDGET_BYTES} bytes minified and gzipped`, () => {
  const built = buildSync({
    entryPoints: [new URL("../edgeperso.js", import.meta.url).pathname],
    bundle: true, // it imports nothing: a dependency would show up here
    minify: true,
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  const gzipped = gzipSync(built.outputFiles[0].contents, { level: 9 }).length;
  assert.ok(gzipped < BUDGET_BYTES, `${gzipped} bytes`);
  console.log(`# edgeperso.js: ${gzipped} bytes minified and gzipped`);
});
