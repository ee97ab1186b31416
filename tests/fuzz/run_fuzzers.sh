#!/bin/sh
# Runs each libFuzzer target for a fixed time on a copy of its seed corpus and prints one line per
# target; exits 1 when any target found a crash, leak, UB report, hang (over 10 s per input) or
# out-of-memory (over 2 GB). Called by `make fuzz`; usage: run_fuzzers.sh BUILD SECONDS TARGET...
#
# The working corpora live in BUILD/corpus/<target>/ (seeds copied in, what libFuzzer adds stays
# there between runs; the repository's seeds are never written), the logs in BUILD/logs/, and a
# crashing input in BUILD/findings/ under the name libFuzzer prints.
set -u
build=$1 seconds=$2
shift 2
failed=0
mkdir -p "$build/logs" "$build/findings"
printf '%-18s %12s %9s %8s  %s\n' target runs exec/s corpus result
for target in "$@"; do
  corpus="$build/corpus/$target"
  mkdir -p "$corpus"
  cp -n tests/fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null
  dict=""
  [ -f "tests/fuzz/$target.dict" ] && dict="-dict=tests/fuzz/$target.dict"
  log="$build/logs/$target.log"
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "./$build/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/findings/$target-" $dict "$corpus" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  size=$(ls "$corpus" | wc -l)
  if [ "$rc" -eq 0 ]; then
    result="ok"
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    kind=$(grep -m 1 -o -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z-]+|runtime error: .*|terminate called.*' "$log")
    result="FAILED (exit $rc): ${kind:-see $log}; input: ${artifact:-none}; log: $log"
  fi
  printf '%-18s %12s %9s %8s  %s\n' "$target" "${runs:-?}" "${speed:-?}" "$size" "$result"
done
exit $failed
