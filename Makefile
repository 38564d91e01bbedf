# A newcomer's two commands, `make demo` and `make test`; CI (.ci/run) runs the same targets.
# Debian/Ubuntu with Python 3.11, as root (else APT="sudo apt-get").

APT ?= apt-get
PYTHON ?= python
PIP ?= $(PYTHON) -m pip
CORES ?= 2

# What the pipeline needs at run time beside Python: the paper's TeX engine, Chinese fonts and PDF tools.
APT_PACKAGES := latexmk texlive-xetex texlive-lang-chinese texlive-fonts-recommended fonts-noto-cjk poppler-utils chromium chromium-driver nodejs

.PHONY: demo install test test-fast test-dag lint rulegraph config-docs

demo: install
	snakemake --cores $(CORES) --configfile config/demo.yaml

# Installs only what is missing: the Debian packages not yet installed, then the pinned Python
# packages (pip skips those already at their pinned version). dashscope is installed without its
# dependencies, only for the file it ships: Qwen's BPE ranks (docs/qwen3-tokenizer.md).
install:
	@missing="$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done)"; \
	if [ -n "$$missing" ]; then echo "installing $$missing"; $(APT) update && $(APT) install -y --no-install-recommends $$missing; fi
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps dashscope==2.0.2

# Every test, in two tiers: the fast one first, so that a failure shows within minutes.
test: test-fast test-dag

test-fast:
	$(PYTHON) -m pytest -q -m "not dag and not slow"

test-dag:
	$(PYTHON) -m pytest -q -m "dag or slow" --durations=15

# ruff at its pinned version (requirements.txt), installed first if missing, so lint runs before the install.
lint:
	@$(PYTHON) -m ruff --version >/dev/null 2>&1 || $(PIP) install "$$(grep -E '^ruff==' requirements.txt)"
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# docs/rulegraph.svg, the README's picture of the DAG (needs graphviz's dot, not a run-time dependency).
rulegraph:
	snakemake --rulegraph --configfile config/demo.yaml | dot -Tsvg > docs/rulegraph.svg

# config/README.md's key tables, from config/schema.yaml's descriptions.
config-docs:
	$(PYTHON) scripts/config_docs.py config/schema.yaml config/README.md
