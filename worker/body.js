// Bodies read whole, but never past a limit. A content-length can be absent (a chunked upload) or
// say less than what comes, so bytes are counted as they stream: reading stops at the first chunk
// that crosses the limit, the stream is cancelled, and that chunk is not kept.

// { bytes: Uint8Array } for a body of at most `limit` bytes (an empty one for no body), or
// { over: true } once more than `limit` bytes have arrived.
export async function readAtMost(stream, limit) {
  if (!stream) return { bytes: new Uint8Array(0), over: false };
  const reader = stream.getReader();
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      reader.cancel().catch(() => {}); // the sender is told to stop; its error is not ours
      return { bytes: null, over: true };
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return { bytes: chunks[0], over: false };
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return { bytes, over: false };
}
