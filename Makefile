# bourse: the two commands the README promises are `make run` and `make test`.
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: run release demo test check-fmt clippy unit lint-units bench engine-bench ledger-bench wal-bench recovery-bench load install clean

## run: the main job: the exchange daemon on the demo config (two markets, funded demo
## accounts), listening on 127.0.0.1:7400. Trade from a second terminal with bourse-cli.
run: release
	./target/release/bourse

release:
	$(CARGO) build --release -p bourse-net -p bourse-tools

## demo: a scripted trading session on the engine alone (no server).
demo:
	$(CARGO) run --release -p bourse-tools --bin bourse-demo

## test: formatting, lints, then every test in the workspace.
test: check-fmt clippy unit lint-units

check-fmt:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --all-targets

lint-units:
	systemd/lint.sh

## bench: the engine, ledger and durability benchmarks (release build; results, .hgrm,
## JSON and SVG files in perf/results/). bourse-load (network) is in perf/README.md.
bench: engine-bench ledger-bench wal-bench recovery-bench

engine-bench:
	$(CARGO) build --release -p bourse-perf
	./target/release/engine-bench --mode max --json perf/results/engine-bench-max.json
	./target/release/engine-bench --mode open --rate 1000000 --json perf/results/engine-bench-open-1000000.json --svg perf/results/engine-bench-open-1000000.svg
	./target/release/noise-floor --mode open --rate 1000000 --json perf/results/noise-floor-open-1000000.json

ledger-bench:
	$(CARGO) build --release -p bourse-perf
	./target/release/ledger-bench --mode max --json perf/results/ledger-bench-max.json --svg perf/results/ledger-bench-max.svg

wal-bench:
	$(CARGO) build --release -p bourse-perf
	./target/release/wal-bench --json perf/results/wal-bench.json --svg perf/results/wal-bench.svg

recovery-bench:
	$(CARGO) build --release -p bourse-perf
	./target/release/recovery-bench --json perf/results/recovery-bench.json

## load: the network benchmark: bourse-load against a spawned daemon, next to a tcp-echo
## baseline in the same run (perf/README.md explains the figures).
load:
	$(CARGO) build --release -p bourse-net -p bourse-perf
	./target/release/bourse-load --spawn-server target/release/bourse --spawn-echo target/release/tcp-echo --rate 100000 --json perf/results/bourse-load-open-100000.json

## install: binaries, systemd units and a starting config (kept if present). Then:
##   systemctl daemon-reload && systemctl enable --now bourse-tune bourse
DESTDIR ?=
install: release
	install -D -m 0755 target/release/bourse $(DESTDIR)/usr/local/bin/bourse
	install -D -m 0755 target/release/bourse-cli $(DESTDIR)/usr/local/bin/bourse-cli
	install -D -m 0755 target/release/bourse-log $(DESTDIR)/usr/local/bin/bourse-log
	install -D -m 0755 systemd/tune.sh $(DESTDIR)/usr/local/lib/bourse/tune.sh
	install -D -m 0644 systemd/bourse.service $(DESTDIR)/etc/systemd/system/bourse.service
	install -D -m 0644 systemd/bourse-tune.service $(DESTDIR)/etc/systemd/system/bourse-tune.service
	install -D -m 0644 README.md $(DESTDIR)/usr/local/share/doc/bourse/README.md
	test -e $(DESTDIR)/etc/bourse/bourse.toml || install -D -m 0640 systemd/bourse.toml $(DESTDIR)/etc/bourse/bourse.toml
	if [ -z "$(DESTDIR)" ] && ! getent passwd bourse >/dev/null; then \
		useradd --system --home-dir /var/lib/bourse --shell /usr/sbin/nologin bourse; fi

clean:
	$(CARGO) clean
