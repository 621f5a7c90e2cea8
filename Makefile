# make run    — run the bot (reads .env; Socket Mode when SLACK_APP_TOKEN is set, else HTTP)
# make test   — create .venv, install the bot and its test tools, run the tests (a small chaos run included)
# make chaos  — a long chaos run: three replicas on PostgreSQL, slow and failing Slack and Serval, replicas
#               killed and restarted; prints its seed (replay: make chaos CHAOS_SEED=n; docs/reliability.md)
# make bench  — benchmarks; writes docs/benchmarks.md
# make demo   — try it without a workspace: Serval sandbox + Slack stand-in + the bot; prints a URL
#               (its data: data/demo/; make demo ARGS=--fresh starts over)
# make clean  — remove the venv, caches, build output and the demo's data; never the bot's database
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test chaos bench sandbox demo install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python app.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The long chaos run (tests/test_chaos.py): a random seed unless CHAOS_SEED is given.
CHAOS_SUBMISSIONS ?= 300
CHAOS_SECONDS ?= 240
CHAOS_LEASE_SECONDS ?= 3
chaos: $(STAMP)
	@seed=$${CHAOS_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "chaos seed $$seed (replay: make chaos CHAOS_SEED=$$seed CHAOS_SUBMISSIONS=$(CHAOS_SUBMISSIONS) CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_LEASE_SECONDS=$(CHAOS_LEASE_SECONDS))"; \
	CHAOS_SEED=$$seed CHAOS_SUBMISSIONS=$(CHAOS_SUBMISSIONS) CHAOS_SECONDS=$(CHAOS_SECONDS) \
	CHAOS_LEASE_SECONDS=$(CHAOS_LEASE_SECONDS) \
	$(BIN)/python -m pytest -q -s --timeout $$(( $(CHAOS_SECONDS) * 2 + 300 )) $(PYTEST_ARGS) tests/test_chaos.py

bench: $(STAMP)
	$(BIN)/python -m bench

sandbox: $(STAMP)
	$(BIN)/python -m sandbox.serval --port 8081

demo: $(STAMP)
	$(BIN)/python -m sandbox.demo $(ARGS)

# data/ holds the bot's database (data/tickets.db): only the demo's own folder goes.
clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info data/demo
	find . -name .git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
