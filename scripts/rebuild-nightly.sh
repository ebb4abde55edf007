#!/usr/bin/env bash
# The scheduled rebuild: build from what the nodes shipped over the last days, and publish the
# bundle only when it is not worse than the one serving now (`edgeperso rebuild`,
# docs/deploy.md "Scheduled rebuilds"). Run it from cron (examples/rebuild.crontab) or any
# scheduler; one run at a time (a lock), and its exit code is rebuild's: 0 published, 3 built
# but refused by the guard (the bundle serving now stays), 2 a problem with the input or the
# settings, 1 a bug.
#
# Settings, from the environment:
#   EDGEPERSO_FEEDBACK_STORE     s3://bucket/prefix/ the nodes ship feedback to (required)
#   EDGEPERSO_BUNDLE_STORE       s3://bucket/prefix/ bundles are published to (required)
#   EDGEPERSO_SIGNING_KEY_FILE   the private key bundles are signed with (required)
#   EDGEPERSO_CATALOG            the catalog file (optional)
#   EDGEPERSO_CONFIG             the build config, TOML (optional)
#   EDGEPERSO_REBUILD_DAYS       days of shipped feedback to read (default 90)
#   EDGEPERSO_REBUILD_OUT        where the candidate is written (default build/rebuild)
#   EDGEPERSO                    the edgeperso command (default: .venv/bin/edgeperso, else PATH)
#   AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: the store (docs/deploy.md)
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for name in EDGEPERSO_FEEDBACK_STORE EDGEPERSO_BUNDLE_STORE EDGEPERSO_SIGNING_KEY_FILE; do
    [ -n "${!name:-}" ] || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "rebuild-nightly: set ${missing[*]} (see the top of $0)" >&2
    exit 2
fi
edgeperso=${EDGEPERSO:-}
if [ -z "$edgeperso" ]; then
    if [ -x .venv/bin/edgeperso ]; then edgeperso=.venv/bin/edgeperso; else edgeperso=edgeperso; fi
fi
args=(rebuild --events "$EDGEPERSO_FEEDBACK_STORE" --store "$EDGEPERSO_BUNDLE_STORE"
    --days "${EDGEPERSO_REBUILD_DAYS:-90}" --out "${EDGEPERSO_REBUILD_OUT:-build/rebuild}")
[ -z "${EDGEPERSO_CATALOG:-}" ] || args+=(--catalog "$EDGEPERSO_CATALOG")
[ -z "${EDGEPERSO_CONFIG:-}" ] || args+=(--config "$EDGEPERSO_CONFIG")

lock=${EDGEPERSO_REBUILD_OUT:-build/rebuild}.lock
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
if ! flock -n 9; then
    echo "rebuild-nightly: another rebuild holds $lock; not starting a second" >&2
    exit 2
fi
echo "rebuild-nightly: $(date -u +%Y-%m-%dT%H:%M:%SZ) $edgeperso ${args[*]}"
status=0
"$edgeperso" "${args[@]}" || status=$?
echo "rebuild-nightly: $(date -u +%Y-%m-%dT%H:%M:%SZ) exit $status"
exit "$status"
