# Two entry points: `make demo` (set up + run the main job) and `make test`
# (set up + run every check). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT := out

export XLA_FLAGS := --xla_force_host_platform_device_count=8
export JAX_PLATFORMS := cpu

.PHONY: all demo docs test test-all lint typecheck lit unit unit-all fuzz setup clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "alpa-mlir needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	@mkdir -p $(OUT)
	@echo "== export: a tiny GPT training step (forward, backward, Adam) as StableHLO"
	$(BIN)/alpa-export gpt --preset tiny -o $(OUT)/gpt_tiny.mlir --example-inputs $(OUT)/gpt_tiny.inputs.npz
	@echo "== plan: alpa-opt shards every op over a 2x4 mesh of a p3.16xlarge node (Alpa's ILP)"
	$(BIN)/alpa-opt $(OUT)/gpt_tiny.mlir --mlir-timing \
	    --pass-pipeline='builtin.module(alpa-auto-sharding{mesh=2x4 cluster=p3.16xlarge report=$(OUT)/gpt_tiny.plan.json},canonicalize)' \
	    -o $(OUT)/gpt_tiny.planned.mlir
	@echo "== run: alpa-run on 8 CPU devices, checked against a single-device run"
	$(BIN)/alpa-run $(OUT)/gpt_tiny.planned.mlir --devices 8 --inputs $(OUT)/gpt_tiny.inputs.npz --collectives --reference
	@echo "== pipeline: alpa-pipeshard slices the step into stages on submeshes of a 2x4 cluster (Alpa's DP), 4 microbatches"
	$(BIN)/alpa-opt $(OUT)/gpt_tiny.mlir \
	    --pass-pipeline='builtin.module(alpa-pipeshard{devices=2x4 num-microbatches=4 report=$(OUT)/gpt_tiny.pipeline.json})' \
	    -o $(OUT)/gpt_tiny.pipeline.mlir
	@$(BIN)/python -c "import json; d = json.load(open('$(OUT)/gpt_tiny.pipeline.json')); [print(f\"stage {s['stage']}: layers {s['layers'][0]}..{s['layers'][1]} on submesh {s['submesh'][0]}x{s['submesh'][1]} as {s['logical_shape'][0]}x{s['logical_shape'][1]}\") for s in d['stages']]"
	@echo "== run: the pipeline runtime (1F1B, every stage on its own CPU devices), checked against one device"
	$(BIN)/alpa-run $(OUT)/gpt_tiny.pipeline.mlir --inputs $(OUT)/gpt_tiny.inputs.npz --steps 2 --reference

# docs/passes.md and the README's pass table, generated from the pass registry
# (test/unit/test_docs.py fails when they are stale).
docs: $(STAMP)
	$(BIN)/alpa-opt --list-passes --markdown > docs/passes.md.tmp
	mv docs/passes.md.tmp docs/passes.md
	$(BIN)/python -m alpa_mlir.tools.pass_listing --readme README.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy dialect_utils passes runtime tools models

lit: $(STAMP)
	$(BIN)/lit -sv test/lit

# The exhaustive grids (every zoo model x schedule x microbatch count x plan) run with
# `make test-all`; `make test` keeps a representative set of each.
unit: $(STAMP)
	$(BIN)/pytest -q -m "not exhaustive" test/unit

unit-all: $(STAMP)
	$(BIN)/pytest -q test/unit

test: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory lit
	$(MAKE) --no-print-directory unit

test-all: $(STAMP)
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory lit
	$(MAKE) --no-print-directory unit-all

# Bad and unusual inputs for alpa-opt, alpa-run and alpa-export (tools/fuzz.py): fails
# on any crash, hang, damaged output file or wrong result. `make fuzz N=1000 SEED=0`.
N ?= 200
SEED ?= 0
fuzz: $(STAMP)
	$(BIN)/python -m alpa_mlir.tools.fuzz --n $(N) --seed $(SEED)

clean:
	rm -rf $(OUT) test/lit/Output .pytest_cache .mypy_cache .ruff_cache
