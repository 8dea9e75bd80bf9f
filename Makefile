# The two commands of the README: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU build of torch that these machines carry locally; other machines may pick another.
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test install lint bench clean

run: $(STAMP)
	bash scripts/run

test: $(STAMP)
	bash scripts/test

install: $(STAMP)

# Reinstall when the dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[dev,train]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	bash scripts/bench

clean:
	rm -rf $(VENV) var/db.sqlite3* var/broker var/staticfiles
