# emogate — build, demo and test entry points. `make demo` and `make test` work on a fresh
# machine with only a Rust toolchain and Python 3: `deps` installs the rest into .cache/.
SHELL := /bin/bash
.DEFAULT_GOAL := demo

# The one setting for the ONNX Runtime release: the wheel that is installed, the library
# file name the binary looks for, and the C API level it is built against all follow it.
# CUDA 12 machines: ORT_VERSION=1.26.0 ORT_PACKAGE=onnxruntime-gpu CARGO_FEATURES=cuda.
ORT_VERSION ?= 1.31.1
ORT_PACKAGE ?= onnxruntime
ORT_MINOR := $(word 2,$(subst ., ,$(ORT_VERSION)))
CARGO_FEATURES ?=
FEATURES := ort-api-$(ORT_MINOR) testkit $(CARGO_FEATURES)
CARGO_FLAGS := --release --no-default-features --features "$(strip $(FEATURES))"
# Tests and lint also cover the trainer (feature `train`: synth → train --quick → export → calibrate).
TEST_FLAGS := --release --no-default-features --features "$(strip $(FEATURES) train)"
# `make test-slow` and lint also build the fault suite (feature `fault-suite`).
SLOW_FLAGS := --release --no-default-features --features "$(strip $(FEATURES) train fault-suite)"

CACHE := $(CURDIR)/.cache
ORT_DIR := $(CACHE)/onnxruntime/$(ORT_VERSION)
ORT_LIB := $(ORT_DIR)/libonnxruntime.so.$(ORT_VERSION)
# openSMILE's C API library and configuration files, from the `opensmile` wheel (`featurize`).
OPENSMILE_VERSION ?= 2.6.0
OPENSMILE_DIR := $(CACHE)/opensmile/$(OPENSMILE_VERSION)
OPENSMILE_LIB := $(OPENSMILE_DIR)/libSMILEapi.so
VENV := $(CACHE)/venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed-$(shell cat scripts/requirements-dev.txt | cksum | cut -d' ' -f1)

export EMOGATE_ORT_VERSION := $(ORT_VERSION)
export ORT_DISABLE_TELEMETRY := 1
export EMOGATE_PYTHON := $(PY)

# System packages librdkafka's source build needs (rdkafka `cmake-build` with ssl, sasl, zstd),
# and the speech synthesiser, converter and MP3 encoder the audio front end's tests use.
APT_PACKAGES := cmake libcurl4-openssl-dev libssl-dev libsasl2-dev libzstd-dev pkg-config espeak-ng sox lame
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Kafka-protocol broker for the real-broker tests (see scripts/install_tansu.py).
TANSU := $(CACHE)/bin/tansu
export EMOGATE_TANSU ?= $(TANSU)

.PHONY: deps system-deps build demo test test-deploy test-slow test-gpu test-gpu-run bench lint default-model fixture-model evaluate mc-study fuzz soak clean-cache

## deps: system packages for librdkafka (and espeak-ng/sox for the audio tests), ONNX Runtime
## (from the onnxruntime wheel), openSMILE (from the opensmile wheel), the Python test references
## and the Tansu test broker into .cache/
deps: system-deps $(ORT_LIB) $(OPENSMILE_LIB) $(PY_STAMP) $(TANSU)

## system-deps: apt-get install what librdkafka's cmake build needs, only when missing
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(TANSU): scripts/install_tansu.py $(PY_STAMP)
	$(PY) scripts/install_tansu.py --dest $@ --wheel-dir $(CACHE)/wheels

$(ORT_LIB): scripts/install_ort.py
	python3 scripts/install_ort.py --version $(ORT_VERSION) --package $(ORT_PACKAGE) \
		--dest $(ORT_DIR) --wheel-dir $(CACHE)/wheels

$(OPENSMILE_LIB): scripts/install_opensmile.py
	python3 scripts/install_opensmile.py --version $(OPENSMILE_VERSION) --dest $(OPENSMILE_DIR) \
		--wheel-dir $(CACHE)/wheels

$(PY_STAMP): scripts/requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

## build: release build of the emogate binary
build: deps
	cargo build $(CARGO_FLAGS)

## demo: end-to-end run on an in-process mock Kafka cluster with synthetic records
demo: build
	cargo run $(CARGO_FLAGS) -- demo $(DEMO_ARGS)

## test: the whole suite (unit, property, cross-implementation, ORT parity, the pipeline on the
## mock cluster and on a Tansu broker started on 127.0.0.1, or on EMOGATE_TEST_BROKERS)
test: deps
	cargo test $(TEST_FLAGS)
	$(PY) scripts/test_deploy.py

## test-deploy: Dockerfiles, Helm chart, dashboard and alert rules only (offline, seconds)
test-deploy: $(PY_STAMP)
	$(PY) scripts/test_deploy.py

## test-slow: `make test`, plus the fault suite (tests/fault_suite.rs, docs/reliability.md): `emogate
## serve` as a child process against Tansu on 127.0.0.1 — SIGKILL of the service and of the broker,
## a large backlog, an unwritable archive — bounded by FAULT_TIMEOUT seconds. With
## EMOGATE_TEST_BROKERS=host:port naming a Kafka cluster, also the tests that need a broker hiding
## aborted transactions (Tansu 0.6 does not): pipeline_broker's ignored test, the exactly-once kill, and
## edge_cases' topic deletion under a running stage (which crashes librdkafka on Tansu 0.6).
FAULT_TIMEOUT ?= 900
FAULT_EXTERNAL := $(if $(strip $(EMOGATE_TEST_BROKERS)),--include-ignored,)
test-slow: test
	timeout $(FAULT_TIMEOUT) cargo test $(SLOW_FLAGS) --test fault_suite -- --nocapture --test-threads 1 $(FAULT_EXTERNAL)
ifdef EMOGATE_TEST_BROKERS
	cargo test $(TEST_FLAGS) --test pipeline_broker --test edge_cases -- --include-ignored
else
	@echo "test-slow: set EMOGATE_TEST_BROKERS=host:port to run the exactly-once tests that need a Kafka cluster"
endif

## test-gpu: on a machine with an NVIDIA GPU and CUDA 12 (not part of `make test`): the CUDA build
## against onnxruntime-gpu, tests/model_gpu.rs (CUDA gives the CPU provider's answers, `auto` picks
## CUDA and the bench report says so) and the model tests, then `emogate bench` on the GPU
GPU_MAKE := $(MAKE) ORT_VERSION=1.26.0 ORT_PACKAGE=onnxruntime-gpu CARGO_FEATURES=cuda
test-gpu:
	$(GPU_MAKE) test-gpu-run
test-gpu-run: deps
	cargo test $(TEST_FLAGS) --test model_gpu --test model_inference
	cargo run $(CARGO_FLAGS) -- bench --model models/default --execution-provider cuda --latency-seconds 0

## bench: criterion benchmarks
bench: deps
	cargo bench $(CARGO_FLAGS)

## lint: formatting and clippy, warnings are errors
lint: system-deps
	cargo fmt --all -- --check
	cargo clippy $(SLOW_FLAGS) --all-targets -- -D warnings

## default-model: retrain models/default on the synthetic corpus: all three attributes, then valence
## again with 20 joint epochs (docs/model-card.md; ~25 min on 2 cores)
default-model: deps
	cargo run $(TEST_FLAGS) -- synth --out corpora/synth-default
	cargo run $(TEST_FLAGS) -- train --corpus corpora/synth-default --out models/default
	cargo run $(TEST_FLAGS) -- train --corpus corpora/synth-default --out models/default \
		--attribute valence --weights-from models/default --joint-epochs 20 --dropout-valence 0.2

## evaluate: the documented evaluation into docs/results/ (docs/evaluation.md): the paper's
## figures and tables, baselines and ablations, every method on the trainer's full schedule
## (VAE family 3 + 12 epochs, MCD/STL 40), 10 trials (the paper's protocol). Resumable: each
## finished (trial, method) lands in docs/results/trials/ as it completes; a run stops starting
## new work after EVAL_MINUTES, and the next `make evaluate` continues (commit the directory).
EVAL_TRIALS ?= 10
EVAL_MINUTES ?= 150
EVAL_ARGS ?= --trials $(EVAL_TRIALS) --resume docs/results/trials --max-minutes $(EVAL_MINUTES)
evaluate: deps
	cargo run $(TEST_FLAGS) -- synth --out corpora/synth-default
	cargo run $(TEST_FLAGS) -- synth --out corpora/synth-iemocap --variant iemocap
	cargo run $(TEST_FLAGS) -- evaluate --model models/default --corpus corpora/synth-default \
		--cross-corpus corpora/synth-iemocap --out docs/results $(EVAL_ARGS)

## fuzz: AFL++ through cargo-afl (stable toolchain) on the feature decoder (every framing), the
## prediction decoder, the config loader (TOML + env overrides) and the manifest parser, each for
## FUZZ_SECONDS from the committed seeds in fuzz/corpus/ (docs/reliability.md "Fuzzing"; not in
## `make test`). Exits non-zero on any crash or hang; findings stay in fuzz/out/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := feature_decoder prediction_decoder config manifest
fuzz: $(PY_STAMP)
	command -v cargo-afl >/dev/null || cargo install cargo-afl --locked --version 0.18.2
	@# AFL++'s runtime for this rustc: built by the install; `--build` refuses when it exists.
	cargo afl config --build >/dev/null 2>&1 || true
	cd fuzz && cargo afl build --release
	$(PY) scripts/fuzz_run.py --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

## mc-study: the MC estimator study (issue 15): re-exports models/default's weights with every
## noise bank and S, compares test-split entropies and served decisions with S = 2000, benches
## raw records/s (Rust and Python) per S; resumable under MC_WORK (~40 min on 2 cores)
MC_WORK ?= /tmp/mc
mc-study: deps
	$(PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements-study.txt
	cargo build $(TEST_FLAGS) --bin emogate
	cargo run $(TEST_FLAGS) -- synth --out corpora/synth-default
	$(PY) scripts/mc_grid.py --emogate target/release/emogate --corpus corpora/synth-default \
		--model models/default --work $(MC_WORK) --out docs/results/mc-study.json --png docs/results/mc-study.png

## soak: the long run of issue 17 (not in `make test`; docs/reliability.md "Soak"): `emogate serve`
## (one infer and one archive process, at-least-once) against Tansu on 127.0.0.1 with its SQLite
## storage for SOAK_MINUTES, input paced at half the end-to-end maximum it measures first, one broker
## SIGKILL + restart at 1/3 and a 60 s archive-storage outage at 2/3; RSS, lag and p99 latency every
## 10 s, lost/duplicates read back at the end, into docs/results/soak.{json,csv,png}. Exits non-zero
## when a criterion fails (lost > 0, RSS slope >= 1 MiB/min, lag not drained, a serve process died).
## Its broker is Tansu 0.6 built from crates.io with the `libsql` feature (the wheel's build has only
## memory:// and s3://; the first `make soak` compiles it, ~20 min on 2 cores).
SOAK_MINUTES ?= 30
SOAK_ARGS ?=
TANSU_SQLITE := $(CACHE)/tansu-libsql/bin/tansu
$(TANSU_SQLITE):
	cargo install tansu --version 0.6.0 --locked --features libsql --root $(CACHE)/tansu-libsql
soak: deps $(TANSU_SQLITE)
	$(PY) -m pip install --quiet --disable-pip-version-check -r scripts/requirements-soak.txt
	cargo build $(TEST_FLAGS) --bin emogate
	$(PY) scripts/soak.py --emogate target/release/emogate --tansu $(TANSU_SQLITE) --minutes $(SOAK_MINUTES) \
		--out docs/results/soak $(SOAK_ARGS)

## fixture-model: rebuild the committed random-weight fixture model (deterministic)
fixture-model: $(PY_STAMP)
	$(PY) scripts/make_fixture_model.py --out models/fixture

clean-cache:
	rm -rf $(CACHE)
