# Two commands set everything up on a fresh machine:
#   make run    train, sample, evaluate and plot on the embedded default (config/config.yaml)
#   make test   install with the test extras and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# the workflow's rules call `ihdm` and `snakemake` from the environment's bin folder
export PATH := $(abspath $(BIN)):$(PATH)
# idle OpenMP threads sleep instead of spinning: spinning threads stall the other jobs'
# parallel work on a busy machine (benchmarks/README.md, "OpenMP wait policy")
export OMP_WAIT_POLICY ?= PASSIVE
CORES  ?= all
# torch/torchvision versions this project is tested with (override for another platform);
# every other dependency is pinned by constraints.txt
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: run test install install-test dry-run lint bench gpu-wheels clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install $(TORCH_PINS)
	$(BIN)/pip install -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/snakemake --cores $(CORES) --workflow-profile workflow/profiles/default
	$(BIN)/snakemake --cores 1 --workflow-profile workflow/profiles/default --report results/default/report.html

dry-run: install
	$(BIN)/snakemake -n --cores $(CORES) --workflow-profile workflow/profiles/default

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/snakemake --lint --cores 1
	$(BIN)/snakefmt --check workflow

bench: install
	$(BIN)/ihdm bench config/config.yaml

clean:
	rm -rf results/default resources .snakemake

# wheels that the GPU machines' image lacks (Python 3.12, x86-64), for benchmarks/gpu_check.sh
gpu-wheels:
	python3 -m pip download --quiet --dest .gpu-wheels --only-binary=:all: --python-version 3.12 \
		--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 jsonschema tqdm pillow
