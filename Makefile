# `make test` sets everything up (Debian packages, venv, Python packages) and runs every test.
# `make demo` runs the whole product locally against moto. `make bench` runs the benchmarks.
# `make fmt` formats Python and Terraform; `make lint` checks what `make test` needs clean.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-fast test-vm lint fmt units demo bench setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install-system-packages.sh
	scripts/install-system-packages.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '.[dev]'
	touch $(STAMP)

# Every shell script of the repo (hidden folders such as .venv and .cache are not the repo's).
SHELL_SCRIPTS = $(shell find . -name '*.sh' -not -path './.*' -not -path './build/*' | sort)
NEED_TERRAFORM = command -v terraform >/dev/null || { echo "terraform (>= 1.11) is missing: https://developer.hashicorp.com/terraform/install" >&2; exit 1; }

# The same tools, at the same versions, as .pre-commit-config.yaml (tests/test_dev_tools.py).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	@$(NEED_TERRAFORM)
	terraform fmt -check -recursive infrastructure
	shellcheck $(SHELL_SCRIPTS)

# The unit files beside their templates, rendered for the default layout (scripts/render-units).
units: $(STAMP)
	$(PY) scripts/render-units

fmt: $(STAMP) units
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	@$(NEED_TERRAFORM)
	terraform fmt -recursive infrastructure

# Everything but the VM test in TEST_WORKERS processes (a file's tests stay in one), then the VM
# test alone: its wake phases are timings, which other tests' load would change.
TEST_WORKERS ?= 3
test: $(STAMP) lint
	$(PY) -m pytest -m "not vm" -n $(TEST_WORKERS) --dist loadfile
	$(PY) -m pytest -m vm

test-fast: $(STAMP)
	$(PY) -m pytest -m "not vm" -n $(TEST_WORKERS) --dist loadfile

test-vm: $(STAMP)
	$(PY) -m pytest -m vm

demo: $(STAMP)
	$(PY) -m demo

bench: $(STAMP)
	$(PY) -m bench

# The JupyterLab extension: ec2_bootstrap/labextension/ (TypeScript) built into the prebuilt
# ec2_bootstrap/labextensions/jupyter-on-demand/ that ships (commit it). Needs Node.js and npm;
# `jupyter labextension build` comes from the venv.
.PHONY: labextension
labextension: $(STAMP)
	cd ec2_bootstrap/labextension && npm ci && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npm run build

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache .mypy_cache .hypothesis
