#!/usr/bin/env bash
# Checks the units with `systemd-analyze verify`, which exits 0 even on warnings, so any
# output on stderr counts as a failure. The units name installed paths; this points them
# at a stand-in tree so the check does not depend on `make install` having run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v systemd-analyze >/dev/null; then
    echo "systemd/lint.sh: systemd-analyze not found; install the systemd package" >&2
    exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/lib" "$work/units"
printf '#!/bin/sh\nexit 0\n' > "$work/bin/bourse"
chmod +x "$work/bin/bourse"
cp "$here/tune.sh" "$work/lib/tune.sh"
for unit in bourse.service bourse-tune.service; do
    sed -e "s#/usr/local/bin/#$work/bin/#g" -e "s#/usr/local/lib/bourse/#$work/lib/#g" \
        "$here/$unit" > "$work/units/$unit"
done
errors="$(cd "$work/units" && systemd-analyze verify ./bourse.service ./bourse-tune.service 2>&1 >/dev/null || true)"
if [ -n "$errors" ]; then
    echo "systemd/lint.sh: unit problems:" >&2
    echo "$errors" >&2
    exit 1
fi
# Hardening: `systemd-analyze security` rates the daemon's unit from 0 (locked down) to
# 10 (exposed); keep it at 4.0 ("OK") or better.
exposure_max=4.0
report="$(cd "$work/units" && systemd-analyze security --offline=true ./bourse.service 2>&1 || true)"
exposure="$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for bourse.service: \([0-9.]*\).*/\1/p')"
if [ -z "$exposure" ]; then
    echo "systemd/lint.sh: no exposure level from systemd-analyze security:" >&2
    echo "$report" >&2
    exit 1
fi
if ! awk -v e="$exposure" -v m="$exposure_max" 'BEGIN { exit !(e <= m) }'; then
    echo "systemd/lint.sh: bourse.service exposure $exposure is worse than $exposure_max:" >&2
    printf '%s\n' "$report" | grep '✗' >&2 || true
    exit 1
fi
# tune.sh on a fake /sys and /proc: check finds every untuned knob, apply tunes them,
# and a missing file is reported, not fatal.
fake="$work/fake"
mkdir -p "$fake/sys/devices/system/cpu/cpu0/cpufreq" "$fake/sys/kernel/mm/transparent_hugepage" \
    "$fake/proc/sys/vm" "$fake/proc/sys/kernel" "$fake/sys/devices/system/clocksource/clocksource0" \
    "$fake/proc/irq/10" "$fake/proc/irq/11"
echo 0-3 > "$fake/sys/devices/system/cpu/online"
echo powersave > "$fake/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
echo "[always] madvise never" > "$fake/sys/kernel/mm/transparent_hugepage/enabled"
echo "always defer [madvise] never" > "$fake/sys/kernel/mm/transparent_hugepage/defrag"
echo 60 > "$fake/proc/sys/vm/swappiness"
echo 1 > "$fake/proc/sys/kernel/timer_migration"
echo "tsc hpet acpi_pm" > "$fake/sys/devices/system/clocksource/clocksource0/available_clocksource"
echo hpet > "$fake/sys/devices/system/clocksource/clocksource0/current_clocksource"
echo 0-3 > "$fake/proc/irq/10/smp_affinity_list"
echo 0 > "$fake/proc/irq/11/smp_affinity_list"
tune() { TUNE_ROOT="$fake" BOURSE_CORES="2 3" "$here/tune.sh" "$@" 2>&1; }
if report="$(tune check)"; then
    echo "systemd/lint.sh: tune.sh check passed an untuned machine:" >&2; echo "$report" >&2; exit 1
fi
for expected in "UNTUNED  /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor = powersave" \
    "UNTUNED  /sys/kernel/mm/transparent_hugepage/enabled = always" \
    "UNTUNED  /sys/kernel/mm/transparent_hugepage/defrag = madvise" \
    "UNTUNED  /proc/sys/vm/swappiness = 60" "UNTUNED  /proc/sys/kernel/timer_migration = 1" \
    "UNTUNED  clocksource = hpet" "UNTUNED  irq 10 may run on a bourse core" \
    "n/a      /proc/sys/kernel/numa_balancing"; do
    if ! printf '%s\n' "$report" | grep -qF "$expected"; then
        echo "systemd/lint.sh: tune.sh check did not report: $expected" >&2; echo "$report" >&2; exit 1
    fi
done
if ! report="$(tune apply)" || ! report="$(tune check)"; then
    echo "systemd/lint.sh: tune.sh apply did not tune the fake machine:" >&2; echo "$report" >&2; exit 1
fi
if [ "$(cat "$fake/proc/irq/10/smp_affinity_list")" != "0,1" ]; then
    echo "systemd/lint.sh: tune.sh apply left irq 10 on the bourse cores" >&2; exit 1
fi
echo "systemd units: ok (bourse.service exposure $exposure, at most $exposure_max)"
