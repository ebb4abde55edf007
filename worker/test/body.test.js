import { test } from "node:test";
import assert from "node:assert/strict";
import { readAtMost } from "../body.js";

// A stream of the given chunks; `pulled()` counts the chunks read from it so far.
function chunks(...parts) {
  let next = 0;
  let cancelled = false;
  const stream = new ReadableStream(
    {
      pull(controller) {
        if (next === parts.length) return controller.close();
        controller.enqueue(new Uint8Array(parts[next++]));
      },
      cancel() {
        cancelled = true;
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, pulled: () => next, cancelled: () => cancelled };
}

test("chunks up to the limit come back as one array, in order", async () => {
  const { bytes, over } = await readAtMost(chunks([1, 2], [3], [], [4, 5]).stream, 5);
  assert.equal(over, false);
  assert.deepEqual(bytes, new Uint8Array([1, 2, 3, 4, 5]));
});

test("one byte over the limit: refused, and nothing after that chunk is pulled", async () => {
  const body = chunks([1, 2], [3, 4], [5, 6], [7, 8]);
  const { bytes, over } = await readAtMost(body.stream, 3);
  assert.deepEqual({ bytes, over }, { bytes: null, over: true });
  assert.equal(body.pulled(), 2);
  assert.equal(body.cancelled(), true);
});

test("no body reads as an empty one", async () => {
  assert.deepEqual(await readAtMost(null, 10), { bytes: new Uint8Array(0), over: false });
  const { bytes } = await readAtMost(chunks().stream, 0);
  assert.equal(bytes.byteLength, 0);
});
