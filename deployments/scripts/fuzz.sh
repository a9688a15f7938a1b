#!/usr/bin/env bash
# Fuzz the pgoutput decoder (fuzz/fuzz_targets/pgoutput.rs) for a while: any input must give a
# message or an error, never a panic. Usage: fuzz.sh [seconds] (default 120).
#
# cargo-fuzz wants a nightly compiler for its sanitizer flags; this project pins a stable one,
# so RUSTC_BOOTSTRAP=1 lets it take them. cargo-fuzz itself is installed into target/tools.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
seconds=${1:-120}
tools="$root/target/tools"
if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
  echo "== installing cargo-fuzz into $tools"
  cargo install cargo-fuzz --version 0.13.2 --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH" RUSTC_BOOTSTRAP=1
cd "$root/fuzz"
corpus="$root/target/fuzz-corpus/pgoutput"
mkdir -p "$corpus"
echo "== fuzzing the pgoutput decoder for ${seconds}s"
# Seeds (valid messages of every kind) are read, the corpus grows in target/.
cargo fuzz run pgoutput "$corpus" "$root/fuzz/seeds/pgoutput" -- \
  -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1
