# Two commands on a fresh machine: `make reproduce` (set up + the default workflow, end to end)
# and `make test` (set up + the test suite). Both create or update .venv from envs/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
SNAKEMAKE_ARGS ?=
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: reproduce robustness test test-fast lint format setup clean slurm-profile gpu-check verify \
	expected-bands rehearse emulator

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installed when the pins change; torch first, so the CPU build on local disk is taken.
$(VENV)/.installed: envs/requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$$(grep '^torch==' envs/requirements.txt)"
	$(BIN)/python -m pip install --quiet -r envs/requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

# QEMU's user-mode emulator, for the test that runs jobs as other x86-64 CPU models would
# (tests/workflow/test_emulated_cpus.py) and scripts/cpu_census.py; from Debian's packages.
EMULATOR := $(shell command -v qemu-x86_64 2>/dev/null)
emulator:
ifeq ($(EMULATOR),)
	@if [ "$$(uname -m)" = x86_64 ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -qq qemu-user >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq qemu-user)) >/dev/null; \
	else echo "note: qemu-x86_64 missing; install it (apt-get install qemu-user) for the emulated-CPU test"; fi
endif

setup: $(VENV)/.installed

reproduce: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) $(SNAKEMAKE_ARGS)

# Beyond the paper, its own target (docs/robustness.md): relearning and quantization attacks on
# the table rows, evaluated again; table T4, figure F5. Reuses what `make reproduce` made.
robustness: setup
	$(BIN)/snakemake --profile profiles/local --cores $(CORES) $(SNAKEMAKE_ARGS) robustness

test: setup emulator
	$(BIN)/python -m pytest -q

# The inner loop: every test but the Snakemake, SLURM and multi-process runs (marker workflow).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not workflow"

# Once, when a change moves the numbers (not in reproduce or test): the whole workflow for seeds
# 0..SEEDS-1 of the tiny and the default config, each in .bands/<name>/seed_<s>; writes the
# reference tables (seed 0) and their seed bands to config/expected/<name>/ (report/bands.py).
# About 40 min for tiny and 100 min for default on 2 cores; an interrupted run resumes.
# The paper config's whole DAG on this CPU (docs/rehearsal.md): hub-shaped repos written into a
# local hub mirror, then config/paper.yaml + config/rehearsal.yaml (scale only) through the real
# download code, launcher (2 gloo processes: FSDP2 and DDP), precision mixed and DCP checkpoints,
# to tables and figures. From nothing each time: the mirror is regenerated in seconds. Its numbers
# are compared with no expected table, so the CPU's native kernels run it (BILEVEL_NATIVE_KERNELS:
# bf16 matrix products on AMX or AVX-512 where the CPU has them, not the pinned AVX2 emulation).
REHEARSAL := .rehearsal
rehearse: setup
	rm -rf $(REHEARSAL) && mkdir -p $(REHEARSAL)/run && cp -r config $(REHEARSAL)/run/config
	$(BIN)/python -m bilevel_unlearning.cli rehearsal-hub --configfile config/paper.yaml \
		config/rehearsal.yaml --out $(REHEARSAL)/hub \
		--bio-forget-file $(REHEARSAL)/run/gated/bio_remove_dataset.jsonl
	BILEVEL_NATIVE_KERNELS=1 $(BIN)/snakemake all --profile profiles/rehearsal \
		--directory $(REHEARSAL)/run $(SNAKEMAKE_ARGS)

SEEDS ?= 5
EXPECTED ?= tiny default
expected-bands: setup
	for name in $(EXPECTED); do \
		$(BIN)/python scripts/expected_bands.py --name $$name --seeds $(SEEDS) --cores $(CORES) || exit 1; \
	done

# Read-only: recheck every checksum of paper_figures/MANIFEST.json (tables, figures, result
# JSONs, model weights); runs no job.
verify: setup
	$(BIN)/python -m bilevel_unlearning.cli verify --manifest paper_figures/MANIFEST*.json

# Once per cluster account: link profiles/slurm where Snakemake finds a profile by name, so that
# `snakemake --profile slurm all` works from the repository root.
slurm-profile: setup
	@dir="$$($(BIN)/python -c 'from snakemake.cli import get_appdirs; print(get_appdirs().user_config_dir)')"; \
	mkdir -p "$$dir" && ln -sfn "$(CURDIR)/profiles/slurm" "$$dir/slurm" && \
	echo "linked $$dir/slurm -> $(CURDIR)/profiles/slurm: now run 'snakemake --profile slurm all'"

# The GPU acceptance check (CUDA GPUs, no network): tables, step speed, memory, and the GPU
# path as the cluster runs it (rehearsal slice, NCCL, DDP schedule, FSDP resume, 7B evaluation).
# `make gpu-check GPU_CHECK_ARGS="--device cpu"` is its dry mode (run by the tests too).
GPU_CHECK_ARGS ?=
gpu-check: setup
	$(BIN)/python scripts/gpu_check.py $(GPU_CHECK_ARGS)

lint: setup
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint --cores 1

format: setup
	$(BIN)/ruff check --fix src tests scripts benchmarks
	$(BIN)/ruff format src tests scripts benchmarks
	$(BIN)/snakefmt workflow

clean:
	rm -rf results .snakemake .rehearsal
