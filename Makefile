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

## install: binaries, systemd units and a starting config (kept if present), then the
## README's "Operators" walkthrough: add an admin key (`bourse keygen`), check the config,
##   systemctl daemon-reload && systemctl enable --now bourse-tune bourse
## The system user and group come first, so the config can be root:bourse 0640 (it holds
## key secrets; the daemon runs as bourse). Into a DESTDIR (a staging tree) no user is
## created. PROFILE/BIN_DIR/BINS install already-built binaries (the install test uses
## the debug build); BOURSE_GROUP names the group that may read the config.
DESTDIR ?=
PROFILE ?= release
BIN_DIR ?= target/$(PROFILE)
BINS ?= bourse bourse-cli bourse-log
BOURSE_USER ?= bourse
BOURSE_GROUP ?= bourse
# Ownership needs root; an unprivileged staging install keeps the installer's.
OWNER = $(if $(filter 0,$(shell id -u)),-o root -g $(BOURSE_GROUP))
install: $(if $(filter release,$(PROFILE)),release)
	if [ -z "$(DESTDIR)" ]; then \
		getent group $(BOURSE_GROUP) >/dev/null || groupadd --system $(BOURSE_GROUP); \
		getent passwd $(BOURSE_USER) >/dev/null || useradd --system --gid $(BOURSE_GROUP) \
			--home-dir /var/lib/bourse --no-create-home --shell /usr/sbin/nologin $(BOURSE_USER); \
	fi
	for bin in $(BINS); do install -D -m 0755 $(BIN_DIR)/$$bin $(DESTDIR)/usr/local/bin/$$bin || exit 1; done
	install -D -m 0755 systemd/tune.sh $(DESTDIR)/usr/local/lib/bourse/tune.sh
	install -D -m 0644 systemd/bourse.service $(DESTDIR)/etc/systemd/system/bourse.service
	install -D -m 0644 systemd/bourse-tune.service $(DESTDIR)/etc/systemd/system/bourse-tune.service
	install -D -m 0644 README.md $(DESTDIR)/usr/local/share/doc/bourse/README.md
	install -d -m 0750 $(OWNER) $(DESTDIR)/etc/bourse
	if [ -e $(DESTDIR)/etc/bourse/bourse.toml ]; then \
		echo "keeping the existing $(DESTDIR)/etc/bourse/bourse.toml"; \
		if [ -n "$(OWNER)" ] && [ "$$(stat -c %G $(DESTDIR)/etc/bourse/bourse.toml)" = root ]; then \
			echo "  (its group becomes $(BOURSE_GROUP), so the daemon can read it)"; \
			chgrp $(BOURSE_GROUP) $(DESTDIR)/etc/bourse/bourse.toml; \
		fi; \
	else \
		install -m 0640 $(OWNER) systemd/bourse.toml $(DESTDIR)/etc/bourse/bourse.toml; \
	fi
	@echo "installed. Next: add an admin key (bourse keygen --role admin >> $(DESTDIR)/etc/bourse/bourse.toml),"
	@echo "check it (bourse --config /etc/bourse/bourse.toml --check-config), then:"
	@echo "  systemctl daemon-reload && systemctl enable --now bourse-tune bourse"

clean:
	$(CARGO) clean
