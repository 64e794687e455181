#!/bin/sh
# Host tuning for a bourse node.
#   tune.sh check   report what is untuned; exit 1 if anything is (0 if all is tuned)
#   tune.sh apply   tune it (run by bourse-tune.service at boot); exit 0 unless a knob
#                   that exists refused the new value
# The knobs: the CPU frequency governor (performance), transparent huge pages (never:
# compaction and khugepaged stall the shard core for milliseconds), vm.swappiness (1),
# kernel.timer_migration (0: timers stay on the CPU that armed them),
# kernel.numa_balancing (0: no page migration under the engine), the clocksource (tsc,
# when the kernel offers it), and IRQ affinity: every interrupt that can be moved is kept
# off the net and shard cores. A file the machine does not have (a VM often lacks
# cpufreq or NUMA) is reported as "n/a", never an error.
#
# The cores are read from /etc/bourse/bourse.toml (server.net_core, server.shard_core);
# BOURSE_CORES="2 3" overrides them. TUNE_ROOT prefixes every /sys and /proc path (the
# test points it at a fake tree).
set -u
root="${TUNE_ROOT:-}"
config="${BOURSE_CONFIG:-/etc/bourse/bourse.toml}"
mode="${1:-check}"
case "$mode" in
    check|apply) ;;
    *) echo "usage: $0 check|apply" >&2; exit 2 ;;
esac

core_of() { # key default
    value=""
    [ -r "$config" ] && value="$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p" "$config" | head -n1)"
    echo "${value:-$2}"
}
cores="${BOURSE_CORES:-$(core_of net_core 2) $(core_of shard_core 3)}"

untuned=0
failed=0
say() { printf '%-8s %s\n' "$1" "$2"; }

# knob FILE WANT [LABEL]: the file holds WANT (for files like THP's "always [never]",
# the bracketed choice); check reports, apply writes.
knob() {
    file="$root$1"; want="$2"; label="${3:-$1}"
    if [ ! -e "$file" ]; then say "n/a" "$label (no $1)"; return; fi
    have="$(cat "$file" 2>/dev/null)"
    case "$have" in *"["*"]"*) have="$(echo "$have" | sed 's/.*\[\(.*\)\].*/\1/')" ;; esac
    if [ "$have" = "$want" ]; then say "ok" "$label = $want"; return; fi
    if [ "$mode" = check ]; then
        say "UNTUNED" "$label = $have (want $want)"; untuned=1
    elif echo "$want" 2>/dev/null > "$file"; then
        say "set" "$label = $want (was $have)"
    else
        say "FAILED" "$label: cannot write $want (is $have)"; failed=1
    fi
}

found=0
for governor in "$root"/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor; do
    [ -e "$governor" ] || continue
    found=1
    knob "${governor#"$root"}" performance
done
[ "$found" = 1 ] || say "n/a" "cpufreq governor (no cpufreq: a VM, or the BIOS owns it)"
knob /sys/kernel/mm/transparent_hugepage/enabled never
knob /sys/kernel/mm/transparent_hugepage/defrag never
knob /proc/sys/vm/swappiness 1
knob /proc/sys/kernel/timer_migration 0
knob /proc/sys/kernel/numa_balancing 0
clocks="$root/sys/devices/system/clocksource/clocksource0"
if [ -e "$clocks/available_clocksource" ] && grep -qw tsc "$clocks/available_clocksource"; then
    knob /sys/devices/system/clocksource/clocksource0/current_clocksource tsc clocksource
else
    say "n/a" "clocksource (tsc not offered: $(cat "$clocks/current_clocksource" 2>/dev/null || echo unknown))"
fi

# IRQs: every CPU online but the bourse cores.
online="$(cat "$root/sys/devices/system/cpu/online" 2>/dev/null)"
expand() { # "0-3,6" -> "0 1 2 3 6"
    echo "$1" | tr ',' '\n' | while IFS=- read -r first last; do
        [ -n "$first" ] && seq "$first" "${last:-$first}"
    done | tr '\n' ' '
}
others=""
for cpu in $(expand "$online"); do
    case " $cores " in *" $cpu "*) ;; *) others="$others${others:+,}$cpu" ;; esac
done
if [ -z "$online" ]; then
    say "n/a" "IRQ affinity (no /sys/devices/system/cpu/online)"
elif [ -z "$others" ]; then
    say "n/a" "IRQ affinity: no CPU is left for interrupts besides the bourse cores ($cores)"
else
    moved=0; stuck=0; bad=0
    for list in "$root"/proc/irq/[0-9]*/smp_affinity_list; do
        [ -e "$list" ] || continue
        irq="$(basename "$(dirname "$list")")"
        on_core=0
        for cpu in $(expand "$(cat "$list" 2>/dev/null)"); do
            case " $cores " in *" $cpu "*) on_core=1 ;; esac
        done
        [ "$on_core" = 1 ] || continue
        if [ "$mode" = check ]; then
            bad=$((bad + 1)); untuned=1
            say "UNTUNED" "irq $irq may run on a bourse core ($(cat "$list"); cores $cores)"
        elif echo "$others" 2>/dev/null > "$list"; then
            moved=$((moved + 1))
        else
            # Per-CPU and managed interrupts cannot be moved; not an error.
            stuck=$((stuck + 1))
        fi
    done
    if [ "$mode" = apply ]; then
        say "set" "IRQ affinity $others ($moved moved; $stuck cannot move: per-CPU or managed)"
    elif [ "$bad" = 0 ]; then
        say "ok" "IRQ affinity: no interrupt on the bourse cores ($cores)"
    fi
fi

if [ "$mode" = check ]; then
    [ "$untuned" = 0 ] || echo "some knobs are untuned: \`$0 apply\` (as root) tunes them" >&2
    exit "$untuned"
fi
exit "$failed"
