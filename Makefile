# nvtopo — one command surface. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CACHE := $(HOME)/.cache/nvtopo
export CARGO_TARGET_DIR ?= $(CACHE)/cargo-target
export PIP_DISABLE_PIP_VERSION_CHECK := 1
RUST_SOURCES := $(shell find rust -name '*.rs' -o -name Cargo.toml 2>/dev/null) pyproject.toml
PYTEST_ARGS ?=

.PHONY: help demo test test-rust test-python lint fmt bench build readme k8s-env mpi-env torch-env kubelet-proto proto clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.deps: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "maturin>=1.7,<2" pytest "hypothesis>=6.100" ruff mypy types-PyYAML \
	    "nvidia-ml-py>=12.535" "networkx>=3.1" "numpy>=1.24" "click>=8.1" "rich>=13" "PyYAML>=6" \
	    "jsonschema>=4.18" "kubernetes>=34.1" "cryptography>=42" "tenacity>=8.2" \
	    "grpcio>=1.66" "grpcio-tools>=1.66" "grpcio-health-checking>=1.66" "grpcio-reflection>=1.66" \
	    "protobuf>=7.35" "import-linter>=2.1"
	touch $@

$(VENV)/.built: $(VENV)/.deps $(RUST_SOURCES)
	$(VENV)/bin/maturin develop --release -q --manifest-path rust/nvtopo-py/Cargo.toml
	touch $@

build: $(VENV)/.built ## build the Rust core into the virtual environment

demo: build ## show catalog systems (no GPU needed): a topology, an optimal GPU set, a multi-node placement
	$(VENV)/bin/nvtopo dump --source system:dgx-h100 --format table
	$(VENV)/bin/nvtopo dump --source system:dgx1-v100 --format matrix
	$(VENV)/bin/nvtopo place --source system:dgx1-v100 --gpus 4 --available 0,2,3,4,5,7
	$(VENV)/bin/nvtopo place --source system:gb200-nvl72x4 --gpus 16 --nodes 4 --domain required

test-rust: ## cargo test of the pure Rust core
	cd rust && cargo test -q -p nvtopo-core

k8s-env: $(VENV)/.deps ## build the pinned Kubernetes control plane + etcd for tests/k8s (cached in ~/.cache/nvtopo/k8s)
	@if [ "$${NVTOPO_K8S:-}" = skip ]; then echo "NVTOPO_K8S=skip: k8s tests deselected, nothing built"; \
	else $(PY) scripts/k8s-test-env build; fi

mpi-env: ## Open MPI (Debian's openmpi-bin) and host aliases for the launcher test (idempotent)
	@sh scripts/mpi-test-env

TORCH_VENV := $(CACHE)/torch-venv

torch-env: $(TORCH_VENV)/.installed ## PyPI's torch in its own venv (gigabytes, once) for the torchrun test

$(TORCH_VENV)/.installed:
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q torch numpy
	$(TORCH_VENV)/bin/python -c "import torch.distributed as d; assert d.is_gloo_available()"
	touch $@

test-python: build k8s-env mpi-env torch-env ## pytest (gpu tests skip without NVML; NVTOPO_K8S=skip leaves out tests/k8s)
	NVTOPO_HYPOTHESIS=$${NVTOPO_HYPOTHESIS:-ci} $(PY) -m pytest -q $(PYTEST_ARGS)

test: build test-rust test-python ## build and run every test
	$(PY) -m mypy.stubtest nvtopo._core --allowlist tests/stubtest-allowlist.txt

lint: $(VENV)/.deps ## rustfmt, clippy, ruff, mypy
	cd rust && cargo fmt --all --check && cargo clippy -q --all-targets -- -D warnings
	$(VENV)/bin/ruff check nvtopo tests benches examples scripts/k8s scripts/k8s-test-env scripts/readme.py
	$(VENV)/bin/ruff format --check nvtopo tests benches examples scripts/k8s scripts/k8s-test-env scripts/readme.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: $(VENV)/.deps ## format Rust and Python in place
	cd rust && cargo fmt --all
	$(VENV)/bin/ruff format nvtopo tests benches examples
	$(VENV)/bin/ruff check --fix nvtopo tests benches examples

KUBELET_API := v0.37.2
KUBELET_PROTOS := pluginregistration/v1 dra/v1 dra/v1beta1 dra-health/v1

kubelet-proto: $(VENV)/.deps ## copy the kubelet's DRA protos (k8s.io/kubelet Go module) into proto/ and regenerate nvtopo/kubelet/_proto
	@dir=$$(GOPATH=$(CACHE)/go GOMODCACHE=$(CACHE)/go/pkg/mod go mod download -json k8s.io/kubelet@$(KUBELET_API) | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') && \
	for api in $(KUBELET_PROTOS); do \
	    mkdir -p proto/k8s.io/kubelet/$$api && install -m 644 $$dir/pkg/apis/$$api/api.proto proto/k8s.io/kubelet/$$api/api.proto; \
	done
	@tmp=$$(mktemp -d) && mkdir -p $$tmp/nvtopo/kubelet/_proto && \
	for api in $(KUBELET_PROTOS); do \
	    cp proto/k8s.io/kubelet/$$api/api.proto $$tmp/nvtopo/kubelet/_proto/$$(echo $$api | tr /- __).proto; \
	done && \
	$(PY) -m grpc_tools.protoc -I $$tmp --python_out=. --pyi_out=. $$tmp/nvtopo/kubelet/_proto/*.proto && \
	rm -rf $$tmp && echo "nvtopo/kubelet/_proto: generated from k8s.io/kubelet@$(KUBELET_API)"

bench: build ## run the benchmarks and rewrite benches/RESULTS.md
	$(PY) benches/run.py

proto: $(VENV)/.deps ## regenerate the checked-in gRPC stubs (nvtopo/service/_proto) from proto/
	$(PY) scripts/proto.py

readme: build ## rerun the README's examples and write their real output into it
	$(PY) scripts/readme.py --update

clean: ## remove the virtual environment and build outputs
	rm -rf $(VENV) rust/target .pytest_cache .mypy_cache .hypothesis
