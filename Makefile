# Two commands set everything up on a fresh machine: `make demo` and `make test`. What pip and
# npm cannot install (a C compiler, Node.js) comes from Debian's packages, once per machine:
# `make system` (CI runs it first). The other targets never run apt-get: they check, and name
# the package missing and the command that installs it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM := PYTHON=$(PYTHON) scripts/install-system-packages.sh
SYSTEM_GROUPS ?= python node prometheus browser spark

NODE_STAMP := node_modules/.installed
MUTANTS_STAMP := $(VENV)/.mutants-installed

.PHONY: system demo test lint bench loadtest mutants sample clean stress storefront

system:
	$(SYSTEM) $(SYSTEM_GROUPS)

$(STAMP): pyproject.toml constraints.txt
	@# LightFM (a baseline) compiles its C extension at install.
	@$(SYSTEM) --check python
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[build,baselines,spark,test,loadtest,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

lint: $(STAMP) $(NODE_STAMP)
	$(PY) -m ruff check edge export simulator tests scripts bench loadtest
	$(PY) -m ruff format --check edge export simulator tests scripts bench loadtest
	$(PY) -m mypy  # edge, export and simulator, strict (pyproject.toml, [tool.mypy])
	npm run lint --silent

# The gateway Worker's tools (wrangler, pinned by package-lock.json). wrangler 4.86 needs Node 20+.
$(NODE_STAMP): package.json package-lock.json
	@$(SYSTEM) --check node
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

test: lint $(NODE_STAMP)
	@$(SYSTEM) --check node prometheus browser spark
	npm test --silent
	$(PY) -m pytest

# Benchmarks report figures to bench/results/; they assert nothing. The HTTP one drives the
# server with wrk (Debian's package), each pinned to its own core with taskset.
bench: $(STAMP)
	@$(SYSTEM) --check bench
	$(PY) bench/bench_recommend.py
	$(PY) bench/bench_retrieval.py
	$(PY) bench/bench_bandit.py
	$(PY) bench/bench_bundle.py
	$(PY) bench/bench_http.py
	$(PY) bench/bench_overload.py
	$(PY) bench/bench_slow_clients.py
	$(PY) bench/bench_shipping.py
	$(PY) bench/bench_observability.py
	$(PY) bench/summary.py

# Recommendation quality on shaped logs: `edgeperso evaluate` on every shared data set and the
# simulator, as they are and in each stress shape, under each protocol (bench/stress.py;
# docs/benchmarks.md#stress-shapes). Tables in bench/results/stress.md; STRESS_ARGS="--quick".
stress: $(STAMP)
	$(PY) bench/stress.py $(STRESS_ARGS)

# The demo storefront on http://127.0.0.1:8787/ (scripts/storefront.py; docs/storefront.md): a
# shop built from the shipped sample, its pages filled by the gateway under wrangler dev and by
# edgeperso.js. Ctrl-C stops it.
storefront: $(STAMP) $(NODE_STAMP)
	$(PY) scripts/storefront.py $(STOREFRONT_ARGS)

# Locust against the edge on 127.0.0.1 for 20 s (loadtest/run.py): Locust's CSV and HTML report
# and build/loadtest/summary.json; exits 1 when a request fails unexpectedly or p99 is over budget.
loadtest: $(STAMP)
	$(PY) loadtest/run.py $(LOADTEST_ARGS)

# Mutation testing of the rules, recommend, bundle and validation modules, one at a time, with
# the tests of each (scripts/mutants.py; docs/testing.md has the score and the survivors). About
# 15 minutes on 2 cores. MUTANTS=rules runs one module.
$(MUTANTS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[mutants]'
	touch $(MUTANTS_STAMP)

mutants: $(MUTANTS_STAMP)
	$(PY) scripts/mutants.py $(MUTANTS)

# Remake the shipped sample from the full UCI file (not needed to run anything).
sample: $(STAMP)
	$(PY) scripts/make_sample.py ../shared/data/online_retail_uci/online_retail.csv.gz \
		examples/online_retail_sample.csv.gz

clean:
	rm -rf build .pytest_cache .ruff_cache .mypy_cache .wrangler mutants
