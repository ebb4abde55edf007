"""Inner products of one user vector with every int8 item row, and their top k, in one
onnxruntime call: the tail of the top-k search, when the early stop over rows by norm would
read most of the catalog. Export writes the graph (`export.embeddings.scan_graph`) into
embeddings.msgpack; the rows it multiplies are the file's own, supplied at load.

The user vector is quantized to 7 bits and split into its positive and negative parts, both
unsigned: two rows of MatMulInteger (uint8 × int8), whose pairwise sums stay inside int16, where
AVX2's u8 × s8 kernel would saturate. onnxruntime packs the rows for its integer GEMM once, when
the session is made. Quantizing the user costs a little precision, so callers ask for more rows
than they need and rescore those exactly."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from edge.onnx_session import onnx_session, session_options

USER_LEVELS = 127  # 7 bits: see above


class Int8Scan:
    """Top-k rows of `rows · user` for int8 `rows` [n, d] with a float32 `scale` per row."""

    def __init__(
        self,
        graph: bytes,
        rows: np.ndarray,
        scale: np.ndarray,
        options: ort.SessionOptions | None = None,  # the serving ones unless given (benchmarks)
        file: str = "embeddings.msgpack",  # where export stores the graph
    ) -> None:
        if rows.dtype != np.int8 or rows.ndim != 2:
            raise ValueError(f"the int8 scan needs int8 rows [n, d], got {rows.dtype} {rows.shape}")
        self.n_rows, self.dim = rows.shape
        options = options or session_options()
        # The graph's B is [d, n]: the rows transposed (9 ms for 100,000 × 64 on our machine).
        supplied = [np.ascontiguousarray(rows.T), np.ascontiguousarray(scale, dtype=np.float32)]
        options.add_external_initializers(
            ["rows_t", "scale"], [ort.OrtValue.ortvalue_from_numpy(a) for a in supplied]
        )
        self.session = onnx_session(graph, file, options)

    def top_rows(self, user: np.ndarray, k: int) -> np.ndarray:
        """Row numbers of the k largest products of the quantized user, in no promised order."""
        k = min(k, self.n_rows)
        peak = float(np.abs(user).max()) if user.size else 0.0
        if k <= 0 or peak == 0.0:
            return np.arange(k, dtype=np.int64)
        levels = np.rint(user * (USER_LEVELS / peak))
        feed = np.empty((2, self.dim), dtype=np.uint8)  # per call: a session serves many threads
        np.clip(levels, 0, USER_LEVELS, out=feed[0], casting="unsafe")
        np.clip(-levels, 0, USER_LEVELS, out=feed[1], casting="unsafe")
        (rows,) = self.session.run(["rows"], {"user": feed, "k": np.array([k], dtype=np.int64)})
        top: np.ndarray = rows[0]  # rows is [1, k]
        return top
