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

engine-bench ledger-bench:
	$(CARGO) build --release -p bourse-perf
	./target/release/$@ --json perf/results/$@.json

clean:
	$(CARGO) clean
