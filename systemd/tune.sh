#!/bin/sh
# Host tuning for a bourse node; run by bourse-tune.service. Each step is best effort:
# a virtual machine may not expose the knob, and that is not an error.
set -u
for governor in /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor; do
    [ -w "$governor" ] && echo performance > "$governor"
done
# Huge-page compaction can stall the shard core for milliseconds.
[ -w /sys/kernel/mm/transparent_hugepage/defrag ] && echo never > /sys/kernel/mm/transparent_hugepage/defrag
exit 0
