#!/bin/sh
# Regenerates net/src/generated/bourse_generated.rs from net/schema/bourse.fbs
# (`./regen.sh`), or checks that the committed file is what flatc produces
# (`./regen.sh check`). Needs cmake and g++ (Debian: apt-get install cmake g++): the
# first run builds flatc 25.12.19 from source (~70 s on 2 cores), later runs take seconds.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=${1:-generate}
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/codegen}" \
    exec cargo run --quiet --manifest-path "$here/codegen/Cargo.toml" -- "$mode"
