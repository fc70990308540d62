#!/usr/bin/env bash
# libFuzzer targets of tests/fuzz (clang-14, libfuzzer-14-dev; see tests/fuzz/fuzz_targets.cmake).
#   scripts/fuzz.sh build                 configure and build them in $FUZZ_BUILD_DIR
#   scripts/fuzz.sh smoke [SECONDS]       build, then run each target SECONDS (default 20) from
#                                         its seeds; exit 1 if any target crashed
#   scripts/fuzz.sh run [SECONDS]         the same without building
#   scripts/fuzz.sh long N [TARGET...]    run each target (or those named) for N executions
#                                         (-runs=N); report executions, exec/s and crashes
#   scripts/fuzz.sh repro TARGET FILE...  run a target once on saved inputs (e.g. a crash)
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_PARALLEL (targets run at
# once, default 2), FUZZ_TIMEOUT (seconds one input may take, default 30; wall time,
# so keep it above the stalls of a busy machine), FUZZ_ARGS (extra libFuzzer flags).
# Each target grows its own corpus in $FUZZ_BUILD_DIR/corpus/<target> (the seeds in
# tests/fuzz/corpus are only read); crash inputs land in $FUZZ_BUILD_DIR/crashes/<target>/,
# logs in $FUZZ_BUILD_DIR/logs/<target>.log. Copy a crash to tests/fuzz/crashes/<target>/
# to keep it.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
PARALLEL=${FUZZ_PARALLEL:-2}
TARGETS=(reference www_authenticate manifest token_response docker_config config_file headers
  oci_layout text)
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:print_stacktrace=1}
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:suppressions=$PWD/tests/sanitizers/ubsan.supp}

with_lock() { if command -v flock >/dev/null; then flock /tmp/regd-build.lock "$@"; else "$@"; fi; }

build() {
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++-14 -DREGD_FUZZ=ON -DREGD_BUILD_TESTS=OFF >/dev/null
  with_lock cmake --build "$BUILD" --target regd_fuzz -j "${JOBS:-2}"
}

stat_of() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

# run_one TARGET LIBFUZZER-FLAGS...: one libFuzzer run; writes logs/TARGET.log and
# logs/TARGET.result ("ok" or "CRASH").
run_one() {
  local t=$1
  shift
  local work="$BUILD/corpus/$t" crashes="$BUILD/crashes/$t" log="$BUILD/logs/$t.log"
  mkdir -p "$work" "$crashes" "$BUILD/logs"
  local rc=0
  # shellcheck disable=SC2086
  "$BUILD/fuzz/fuzz_$t" -print_final_stats=1 -timeout="${FUZZ_TIMEOUT:-30}" -rss_limit_mb=2048 \
    -artifact_prefix="$crashes/" "$@" ${FUZZ_ARGS:-} "$work" "tests/fuzz/corpus/$t" \
    >"$log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then echo ok >"$BUILD/logs/$t.result"; else echo CRASH >"$BUILD/logs/$t.result"; fi
}

# run_all TARGETS... -- LIBFUZZER-FLAGS...: FUZZ_PARALLEL at a time, then a table;
# returns 1 if any crashed.
run_all() {
  local targets=()
  while [ "$1" != -- ]; do targets+=("$1"); shift; done
  shift
  for t in "${targets[@]}"; do
    [ -x "$BUILD/fuzz/fuzz_$t" ] || { echo "fuzz.sh: no target $t (build first)" >&2; return 2; }
  done
  local running=0
  for t in "${targets[@]}"; do
    rm -f "$BUILD/logs/$t.result"
    run_one "$t" "$@" &
    running=$((running + 1))
    if [ "$running" -ge "$PARALLEL" ]; then wait -n || true; running=$((running - 1)); fi
  done
  wait
  local failed=0
  printf '%-18s %12s %10s %9s %7s  %s\n' target executions exec/s new_units rss_mb result
  for t in "${targets[@]}"; do
    local log="$BUILD/logs/$t.log" result
    result=$(cat "$BUILD/logs/$t.result" 2>/dev/null || echo CRASH)
    printf '%-18s %12s %10s %9s %7s  %s\n' "$t" "$(stat_of number_of_executed_units "$log")" \
      "$(stat_of average_exec_per_sec "$log")" "$(stat_of new_units_added "$log")" \
      "$(stat_of peak_rss_mb "$log")" "$result"
    if [ "$result" != ok ]; then
      failed=1
      echo "---- $t: $log" >&2
      grep -E 'ERROR|SUMMARY|FUZZ_CHECK|runtime error|Test unit written|^ +#[0-9]' "$log" | head -40 >&2 || true
    fi
  done
  return "$failed"
}

case "${1:-}" in
  build) build ;;
  smoke | run)
    secs=${2:-20}
    if [ "$1" = smoke ]; then build; fi
    run_all "${TARGETS[@]}" -- -max_total_time="$secs"
    ;;
  long)
    n=${2:?usage: fuzz.sh long N [TARGET...]}
    shift 2
    if [ $# -gt 0 ]; then targets=("$@"); else targets=("${TARGETS[@]}"); fi
    start=$(date +%s)
    rc=0
    run_all "${targets[@]}" -- -runs="$n" || rc=$?
    echo "fuzz.sh: long run of $n executions per target took $(( $(date +%s) - start )) s"
    exit "$rc"
    ;;
  repro)
    t=${2:?usage: fuzz.sh repro TARGET FILE...}
    shift 2
    exec "$BUILD/fuzz/fuzz_$t" "$@"
    ;;
  *)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
