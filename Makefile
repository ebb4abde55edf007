# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

NODE_STAMP := node_modules/.installed

.PHONY: demo test lint bench loadtest sample clean

$(STAMP): pyproject.toml constraints.txt
	@# LightFM (a baseline) compiles its C extension at install: get a compiler if there is none.
	@command -v cc >/dev/null || (apt-get update -qq && apt-get install -y -qq gcc libc6-dev)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[build,baselines,test,loadtest,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

lint: $(STAMP) $(NODE_STAMP)
	$(PY) -m ruff check edge export tests scripts bench loadtest
	npm run lint --silent

# The gateway Worker's tools (wrangler, pinned by package-lock.json). wrangler 4.86 needs Node 20+.
$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make test needs Node.js 20 or newer with npm (the gateway Worker's tests run wrangler)" >&2; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || { echo "Node.js $$(node --version) is too old: wrangler 4.86 needs 20 or newer" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

test: lint $(NODE_STAMP)
	npm test --silent
	$(PY) -m pytest

# Benchmarks report figures to bench/results/; they assert nothing. The HTTP one drives the
# server with wrk (Debian's package), each pinned to its own core with taskset.
bench: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) bench/bench_recommend.py
	$(PY) bench/bench_retrieval.py
	$(PY) bench/bench_bandit.py
	$(PY) bench/bench_bundle.py
	$(PY) bench/bench_http.py
	$(PY) bench/bench_overload.py
	$(PY) bench/summary.py

# Locust against the edge on 127.0.0.1 for 20 s (loadtest/run.py): Locust's CSV and HTML report
# and build/loadtest/summary.json; exits 1 when a request fails unexpectedly or p99 is over budget.
loadtest: $(STAMP)
	$(PY) loadtest/run.py $(LOADTEST_ARGS)

# Remake the shipped sample from the full UCI file (not needed to run anything).
sample: $(STAMP)
	$(PY) scripts/make_sample.py ../shared/data/online_retail_uci/online_retail.csv.gz \
		examples/online_retail_sample.csv.gz

clean:
	rm -rf build .pytest_cache .ruff_cache .wrangler
