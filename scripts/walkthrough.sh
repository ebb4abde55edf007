#!/usr/bin/env bash
# The README's five-minute walk-through as a script: export a bundle from the shipped sample,
# inspect it, serve it on 127.0.0.1, ask it for three items, stop it, then evaluate the build
# against the most-popular baseline. tests/test_docs.py runs this file and checks that every
# command the README's walk-through shows is here, in the same order, so the two cannot drift.
#
#     scripts/walkthrough.sh      (after `make demo` or `make test`; about a minute)
#
# Where the README writes into build/walkthrough and serves on port 8000, this script uses a
# temporary directory (removed at the end) and a free port.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PWD/.venv/bin:$PATH"
command -v edgeperso >/dev/null || {
    echo "edgeperso is not installed: run 'make demo' or 'make test' first" >&2
    exit 1
}
command -v curl >/dev/null || { echo "the walk-through needs curl" >&2; exit 1; }

OUT=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
SERVER=
cleanup() {
    if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; fi
    rm -rf "$OUT"
}
trap cleanup EXIT

# 1. Export
edgeperso export --events examples/online_retail_sample.csv.gz \
    --config configs/online_retail.toml --no-evaluate --out "$OUT/bundle"
test -s "$OUT/bundle/report.html" # the page for people, beside the bundle's files

# 2. Inspect
edgeperso inspect "$OUT/bundle"

# 3. Serve
edgeperso serve --bundle "$OUT/bundle" --host 127.0.0.1 --port "$PORT" &
SERVER=$!
until curl -sf "http://127.0.0.1:$PORT/readyz"; do sleep 0.5; kill -0 "$SERVER"; done
echo

# 4. One request
curl -s "http://127.0.0.1:$PORT/v1/recommend" -H 'content-type: application/json' \
    -d '{"session": {"events": [{"type": "view", "item_id": "22086"}]}, "k": 3}'
echo
kill "$SERVER"
wait "$SERVER" || true  # a server stopped by SIGTERM may exit non-zero
SERVER=

# 5. Evaluate
edgeperso evaluate --events examples/online_retail_sample.csv.gz \
    --config configs/online_retail.toml --baselines popular --max-cases 300
