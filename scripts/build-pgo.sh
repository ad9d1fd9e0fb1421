#!/usr/bin/env bash
# A profile-guided release build of ferrolite (PGO), for production and the benchmarks.
#
#   scripts/build-pgo.sh          # prints the binary's path: $CARGO_TARGET_DIR/pgo-use/release/ferrolite
#
# 1. builds ferrolite with LLVM's instrumentation (-Cprofile-generate) in a target dir of its own,
# 2. serves the traffic of scripts/pgo-train.py with it (scripts/pgo-serve-train.sh), against the
#    bench fake upstream over plain HTTP and TLS: chat JSON and streams, passed through and
#    translated, Responses, /v1/messages, a budgeted key, a long conversation, errors,
# 3. merges the profile (llvm-profdata from rustup's llvm-tools, installed when missing) and
#    builds the release binary again with -Cprofile-use, in a third target dir.
# The request path's hot code is then laid out together and its branches ordered by what the
# traffic took; cold code (start-up, the CLI, errors) moves out of the way. 20-30 minutes on 2
# cores the first time (two fat-LTO builds besides the usual one); later runs rebuild what
# changed. The profile's path stays the same, so crates that did not change keep the code an
# earlier profile laid out: remove $CARGO_TARGET_DIR/pgo-use to rebuild all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
script_name=scripts/build-pgo.sh
. benches/lib.sh
need cargo "https://rustup.rs"
need rustup "https://rustup.rs"
# The training run checks these too; here they fail before the builds rather than after.
need python3 "apt-get install python3"
need openssl "apt-get install openssl"

sysroot="$(rustc --print sysroot)"
host="$(rustc -vV | sed -n 's/^host: //p')"
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  say "installing llvm-tools (rustup component add llvm-tools) for llvm-profdata"
  rustup component add llvm-tools
fi
[ -x "$profdata" ] || { say "llvm-profdata not found at $profdata after installing llvm-tools"; exit 1; }

build_release -p ferrolite-bench --bin fake-upstream

profiles="$target/pgo-profiles"
rm -rf "$profiles"
mkdir -p "$profiles"
say "building ferrolite with instrumentation ($target/pgo-generate)"
CARGO_TARGET_DIR="$target/pgo-generate" RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$profiles" \
  cargo build -q --release -p ferrolite

say "training: the instrumented ferrolite serves scripts/pgo-train.py's traffic"
scripts/pgo-serve-train.sh "$target/pgo-generate/release/ferrolite" "$bin/fake-upstream" >&2
ls "$profiles"/*.profraw >/dev/null 2>&1 || { say "no profile was written to $profiles"; exit 1; }

"$profdata" merge -o "$target/pgo.profdata" "$profiles"
say "building ferrolite with the profile ($target/pgo-use)"
CARGO_TARGET_DIR="$target/pgo-use" RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$target/pgo.profdata" \
  cargo build -q --release -p ferrolite
say "built $target/pgo-use/release/ferrolite"
echo "$target/pgo-use/release/ferrolite"
