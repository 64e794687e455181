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
echo "systemd units: ok (bourse.service exposure $exposure, at most $exposure_max)"
