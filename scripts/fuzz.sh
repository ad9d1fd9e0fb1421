#!/usr/bin/env bash
# Runs every fuzz target under libFuzzer for a bounded time (default 60 s each; the first
# argument overrides it). Crashes are copied into fuzz/regressions/<target>/, where
# tests/it/fuzz_regressions.rs replays them on every test run: commit them with the fix.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
status=0
for target in manifest sse eventstream translate_request translate_response provider_streams anthropic_events openai_chunks json_scan h1_answer h1_request; do
  corpus="fuzz/corpus/$target"
  mkdir -p "$corpus"
  case "$target" in
    manifest) cp tests/manifests/* "$corpus"/ ;;
    h1_answer) cp tests/fixtures/http1/* "$corpus"/ ;;
    h1_request) cp tests/fixtures/http1_requests/* "$corpus"/ ;;
    *) cp tests/fixtures/*.json tests/fixtures/*.sse tests/fixtures/*.eventstream "$corpus"/ 2>/dev/null || true ;;
  esac
  cp fuzz/regressions/"$target"/* "$corpus"/ 2>/dev/null || true
  echo "== fuzz $target for ${seconds}s"
  if ! cargo fuzz run --sanitizer none "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048; then
    status=1
  fi
  for crash in fuzz/artifacts/"$target"/crash-* fuzz/artifacts/"$target"/oom-* fuzz/artifacts/"$target"/timeout-*; do
    [ -e "$crash" ] || continue
    mkdir -p "fuzz/regressions/$target"
    cp "$crash" "fuzz/regressions/$target/"
    echo "kept $crash in fuzz/regressions/$target/" >&2
  done
done
exit "$status"
