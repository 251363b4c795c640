# Every target bootstraps first: a fresh machine needs nothing installed by hand.
#   make test  [PYTEST_ARGS="-k ensemble -x"]
#   make demo  [DEMO_ARGS="--once"]
#   make bench [BENCH_ARGS="--full"]   (tables; plots in bench/out/)
#   make chaos [CHAOS_ARGS="--seed 3 --duration 240 --json"]  (60 s by default; as root,
#              with network partitions; --duration 1800 for the volume run; --keep DIR)
#   make test-fast (the pure core and rules, < 1 min) | make lint (ruff, mypy)
#   make clean | make distclean
# BOOTSTRAP_ARGS="--with chromium" asks the bootstrap for more system packages.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=
CHAOS_ARGS ?=
BOOTSTRAP_ARGS ?=

.PHONY: bootstrap test test-fast demo chaos bench lint clean distclean

bootstrap:
	@bash scripts/bootstrap.sh $(BOOTSTRAP_ARGS)

test: bootstrap
	bash scripts/bootstrap.sh --with chromium --with patroni --with hdfs --with kafka $(BOOTSTRAP_ARGS) && $(VENV)/bin/pytest -q $(PYTEST_ARGS)

demo: bootstrap
	bash scripts/bootstrap.sh $(if $(findstring patroni,$(DEMO_ARGS)),--with patroni) \
		$(if $(findstring hdfs,$(DEMO_ARGS)),--with hdfs) \
		$(if $(findstring kafka,$(DEMO_ARGS)),--with kafka) $(BOOTSTRAP_ARGS)
	$(VENV)/bin/quorumgate demo $(DEMO_ARGS)

chaos: bootstrap
	$(VENV)/bin/quorumgate chaos $(CHAOS_ARGS)

bench: bootstrap
	bash scripts/bootstrap.sh --with patroni --with hdfs --with kafka --with wrk $(BOOTSTRAP_ARGS)
	$(VENV)/bin/python -m bench $(BENCH_ARGS)
	$(VENV)/bin/python -m bench.wire
	$(VENV)/bin/python -m bench.patroni
	$(VENV)/bin/python -m bench.hdfs
	$(VENV)/bin/python -m bench.kafka

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The edit loop: the pure core, the relay and model rules, the simulation's short runs
# (no ZooKeeper, no browser; well under a minute).
test-fast: bootstrap
	$(VENV)/bin/pytest -q -m "not slow" tests/coordinator/test_safety.py \
		tests/coordinator/test_safety_holes.py tests/coordinator/test_safety_simulation.py \
		tests/coordinator/test_placement.py tests/agent/test_relay_merge.py \
		tests/agent/test_imds_models.py tests/imds_sim/test_model.py $(PYTEST_ARGS)

# Caches and build output; keeps .venv (see distclean).
clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis build dist artifacts bench/out
	find . -path ./.venv -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune \
		-exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
