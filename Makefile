# Every target bootstraps first: a fresh machine needs nothing installed by hand.
#   make test  [PYTEST_ARGS="-k ensemble -x"]
#   make demo  [DEMO_ARGS="--once"]
#   make bench [BENCH_ARGS="--full"]   (tables; plots in bench/out/)
#   make chaos [CHAOS_ARGS="--seed 3 --duration 240 --json"]  (60 s by default; as root,
#              with network partitions; --duration 1800 for the volume run; --keep DIR)
#   make lint | make clean | make distclean
# BOOTSTRAP_ARGS="--with chromium" asks the bootstrap for more system packages.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=
CHAOS_ARGS ?=
BOOTSTRAP_ARGS ?=

.PHONY: bootstrap test demo chaos bench lint clean distclean

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
	bash scripts/bootstrap.sh --with patroni --with hdfs --with kafka $(BOOTSTRAP_ARGS)
	$(VENV)/bin/python -m bench $(BENCH_ARGS)
	$(VENV)/bin/python -m bench.patroni
	$(VENV)/bin/python -m bench.hdfs
	$(VENV)/bin/python -m bench.kafka

lint: bootstrap
	$(VENV)/bin/ruff check .

# Caches and build output; keeps .venv (see distclean).
clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis build dist artifacts bench/out
	find . -path ./.venv -prune -o \( -name __pycache__ -o -name '*.egg-info' \) -prune \
		-exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
