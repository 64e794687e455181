# bourse: the two commands the README promises are `make run` and `make test`.
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: run demo test lint check-fmt clippy unit bench engine-bench ledger-bench fuzz-build clean

## run: the main job. Until the server lands: a scripted trading session on the engine.
run: demo

demo:
	$(CARGO) run --release -p bourse-tools --bin bourse-demo

## test: formatting, lints, then every test in the workspace.
test: check-fmt clippy unit

check-fmt:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --all-targets

## bench: the engine and ledger benchmarks (release build; results in perf/results/).
bench: engine-bench ledger-bench

engine-bench:
	$(CARGO) build --release -p bourse-perf
	./target/release/engine-bench --mode max --json perf/results/engine-bench-max.json
	./target/release/engine-bench --mode open --rate 1000000 --json perf/results/engine-bench-open-1000000.json --svg perf/results/engine-bench-open-1000000.svg
	./target/release/noise-floor --mode open --rate 1000000 --json perf/results/noise-floor-open-1000000.json

ledger-bench:
	$(CARGO) build --release -p bourse-perf
	./target/release/ledger-bench --mode max --json perf/results/ledger-bench-max.json --svg perf/results/ledger-bench-max.svg

clean:
	$(CARGO) clean
