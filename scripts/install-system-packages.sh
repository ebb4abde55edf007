#!/usr/bin/env bash
# The Debian packages that pip and npm cannot bring. This installs the missing ones and says
# which; it installs nothing that is already there, so it is safe to run again. With --check it
# installs nothing: it names what is missing and the command that installs it, and fails. The
# Makefile's targets only check, so that `make test` never runs apt-get; CI (.ci/run) runs this
# first, on a machine it may not have seen before.
#
#   scripts/install-system-packages.sh [--check] [GROUP...]     (make system)
#
# Groups (without any: python, node, prometheus, browser and spark, what `make demo` and
# `make test` need):
#   python  building the virtualenv: a C compiler and headers, as LightFM compiles its extension
#   node    the gateway Worker's tests: Node.js 20 or newer, and npm (wrangler 4.86 needs 20+)
#   prometheus  the metrics tests scrape the app with a real Prometheus, and check the alert
#           rules with its promtool (the package's own service is not left enabled)
#   browser the report pages' tests open them in a real headless Chromium (Playwright drives
#           Debian's chromium; Playwright's own browser download is never used)
#   spark   the Spark engine's tests run PySpark in local mode, on a Java runtime (17 or newer)
#   bench   make bench: wrk drives the HTTP benchmarks, taskset pins each process to a core
set -euo pipefail

check=0
groups=()
for arg in "$@"; do
    case "$arg" in
        --check) check=1 ;;
        python | node | prometheus | browser | spark | bench) groups+=("$arg") ;;
        *)
            echo "usage: $0 [--check] [python|node|prometheus|browser|spark|bench]..." >&2
            exit 2
            ;;
    esac
done
[ ${#groups[@]} -gt 0 ] || groups=(python node prometheus browser spark)
python=${PYTHON:-python3}

packages=() # missing Debian packages
reasons=()  # each with what it is for
problems=() # what no Debian package fixes here
need() { # need PACKAGE WHY COMMAND...: PACKAGE is missing when COMMAND fails
    local package=$1 why=$2
    shift 2
    if ! "$@" >/dev/null 2>&1; then
        packages+=("$package")
        reasons+=("$package: $why")
    fi
}
for group in "${groups[@]}"; do
    case "$group" in
        python)
            need gcc "a C compiler: LightFM builds its extension at install" command -v cc
            need libc6-dev "the C library's headers, for that build" test -e /usr/include/stdio.h
            need python3-venv "$python -m venv makes the virtualenv" "$python" -c "import ensurepip, venv"
            ;;
        node)
            need nodejs "the gateway Worker's tests run wrangler on Node.js" command -v node
            need npm "it installs wrangler and the Worker's other tools" command -v npm
            if command -v node >/dev/null; then
                major=$(node -p 'process.versions.node.split(".")[0]')
                if [ "$major" -lt 20 ]; then
                    problems+=("Node.js $(node --version) is too old: wrangler 4.86 needs 20 or newer (Debian 13's nodejs is 20; on older releases install Node.js 20 from its own Debian repository)")
                fi
            fi
            ;;
        prometheus)
            need prometheus "the metrics tests run a real Prometheus (and its promtool)" command -v promtool
            ;;
        browser)
            need chromium "the report pages' tests open them in a headless Chromium" command -v chromium
            ;;
        spark)
            need default-jre-headless "PySpark's local mode runs on a Java runtime (17 or newer)" command -v java
            ;;
        bench)
            need wrk "the HTTP benchmarks' load generator" command -v wrk
            need util-linux "taskset: each benchmark process gets its own core" command -v taskset
            ;;
    esac
done

if [ ${#problems[@]} -gt 0 ]; then
    printf '%s\n' "${problems[@]}" >&2
    exit 1
fi
if [ ${#packages[@]} -eq 0 ]; then
    [ "$check" = 1 ] || echo "system packages: nothing missing for ${groups[*]}"
    exit 0
fi
if [ "$check" = 1 ]; then
    setup="make system"
    [ "${groups[*]}" = "python node prometheus browser spark" ] || setup="make system SYSTEM_GROUPS=\"${groups[*]}\""
    {
        echo "missing Debian packages: ${packages[*]}"
        printf '  %s\n' "${reasons[@]}"
        echo "install them with: $setup   (or: scripts/install-system-packages.sh ${groups[*]}, as root)"
    } >&2
    exit 1
fi

sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
echo "installing Debian packages: ${packages[*]}"
printf '  %s\n' "${reasons[@]}"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# Debian's prometheus package enables a system service listening on every interface; the tests
# start their own on 127.0.0.1, so the service is stopped and disabled where systemd runs.
if [[ " ${packages[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
    "${sudo[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
exec "$0" --check "${groups[@]}" # what apt could not make work is named, and fails the run
