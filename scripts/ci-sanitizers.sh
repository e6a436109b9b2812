#!/usr/bin/env bash
# ci-sanitizers.sh: the native library under AddressSanitizer + UndefinedBehaviorSanitizer, and the
# libFuzzer targets (issue 12). One CI stage; ends with "N passed, N failed, N skipped".
#   1. builds libkernels (CPU + OpenCL, no CUDA), kernels_selftest and the fuzz targets with clang-14,
#      -fsanitize=address,undefined, in build/sanitize;
#   2. runs the self-test on cpu and opencl:0;
#   3. runs both NUnit suites against the sanitized library (the test executables with the ASan runtime
#      preloaded; .NET uses SIGSEGV for its null checks, so ASan must leave that signal alone);
#   4. runs each fuzz target for a fixed number of executions from its checked-in seed corpus.
# Any sanitizer report fails its part (halt_on_error). Usage:
#   scripts/ci-sanitizers.sh                      the CI stage
#   scripts/ci-sanitizers.sh --fuzz-seconds 1800  only build and fuzz, 30 minutes per target
# Needs clang-14 and libclang-rt-14-dev (scripts/install-prereqs.sh installs them).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=build/sanitize
fuzz_runs=${KN_FUZZ_RUNS:-200000}  # per target, in CI (about a minute at ~3000 executions per second)
fuzz_seconds=""
[ "${1:-}" = --fuzz-seconds ] && fuzz_seconds=${2:?--fuzz-seconds needs a number}

passed=0 failed=0 skipped=0
pass() { passed=$((passed + ${1:-1})); }
fail() { failed=$((failed + ${1:-1})); echo "ci-sanitizers: FAIL: ${*:2}"; }
started=$SECONDS

asan_runtime=$(clang-14 -print-file-name=libclang_rt.asan-x86_64.so)
if [ ! -f "$asan_runtime" ]; then
  echo "ci-sanitizers: the ASan runtime is missing ($asan_runtime); install libclang-rt-14-dev (scripts/install-prereqs.sh)"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi

echo "== build ($build: clang-14, -fsanitize=address,undefined, CUDA off)"
CC=clang-14 CXX=clang++-14 cmake -S native -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKN_WITH_CUDA=OFF \
  -DKN_SANITIZE=address,undefined -DKN_BUILD_FUZZERS=ON >/dev/null \
  && cmake --build "$build" -j "$(nproc)" >"$build.log" 2>&1
if [ $? != 0 ]; then
  tail -30 "$build.log"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
echo "built in $((SECONDS - started)) s"

# Leaks are checked in the self-test and the fuzzers (both ours end to end); in dotnet the runtime's
# own allocations would drown them. UBSan stops at its first report, like ASan.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# verify_asan_link_order=0: the fuzz targets link libFuzzer before the shared ASan runtime.
native_asan=allocator_may_return_null=1:detect_leaks=1:verify_asan_link_order=0

if [ -z "$fuzz_seconds" ]; then
  echo; echo "== self-test under ASan/UBSan (cpu, opencl:0)"
  log=$(mktemp)
  devices=(--device cpu)
  [ -n "$(clinfo -l 2>/dev/null | grep -i device)" ] && devices+=(--device opencl:0)
  t=$SECONDS
  (cd "$build" && ASAN_OPTIONS=$native_asan ./kernels_selftest "${devices[@]}") >"$log" 2>&1
  rc=$?
  grep -E "^(FAIL|SKIP)|ERROR: AddressSanitizer|runtime error|SUMMARY" "$log" | head -40
  line=$(grep -E '^selftest: [0-9]+ passed' "$log" | tail -1)
  echo "${line:-selftest: no summary (crashed?)} in $((SECONDS - t)) s"
  if [ -n "$line" ] && [ "$rc" = 0 ]; then
    pass "$(sed -E 's/^selftest: ([0-9]+) passed.*/\1/' <<<"$line")"
  else
    tail -30 "$log"
    fail 1 "self-test under sanitizers (exit $rc)"
  fi
  rm -f "$log"

  echo; echo "== NUnit suites against the sanitized library (ASan runtime preloaded)"
  # handle_segv=0 / allow_user_segv_handler=1: .NET turns SIGSEGV into NullReferenceException itself.
  # detect_leaks=0: the runtime's own allocations are not ours to judge (see above).
  dotnet_asan=handle_segv=0:allow_user_segv_handler=1:detect_leaks=0:allocator_may_return_null=1:use_sigaltstack=0
  for project in Kernels.Tests Kernels.Nn.Tests; do
    out="$build/managed/$project"
    t=$SECONDS
    if ! dotnet build "tests/$project" -c Release -o "$out" -p:KernelsNativeDir="$root/$build/" -nologo -v quiet >"$build/$project.build.log" 2>&1; then
      tail -20 "$build/$project.build.log"
      fail 1 "$project did not build"
      continue
    fi
    log=$(mktemp)
    (cd "$out" && LD_PRELOAD="$asan_runtime" ASAN_OPTIONS=$dotnet_asan ./"$project" --no-ansi) >"$log" 2>&1
    rc=$?
    grep -E "ERROR: AddressSanitizer|runtime error|SUMMARY|^ *failed [A-Za-z]" "$log" | head -40
    p=$(sed -n 's/^ *succeeded: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^ *failed: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    s=$(sed -n 's/^ *skipped: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    echo "$project: ${p:-?} passed, ${f:-?} failed, ${s:-?} skipped (exit $rc) in $((SECONDS - t)) s"
    if [ -z "$p" ]; then tail -30 "$log"; fail 1 "$project printed no summary (crashed?)"; rm -f "$log"; continue; fi
    pass "$p"; skipped=$((skipped + ${s:-0}))
    if [ "${f:-0}" != 0 ] || [ "$rc" != 0 ]; then fail "$(( ${f:-0} > 0 ? f : 1 ))" "$project (exit $rc)"; fi
    rm -f "$log"
  done
fi

echo; echo "== libFuzzer targets"
for target in "$build"/fuzz/fuzz_*; do
  [ -x "$target" ] || continue
  name=${target##*/fuzz_}
  seeds=native/fuzz/corpus/$name
  corpus=$(mktemp -d)  # new inputs land here, not in the checked-in seeds
  if [ -n "$fuzz_seconds" ]; then limit=(-max_total_time="$fuzz_seconds"); else limit=(-runs="$fuzz_runs"); fi
  log=$(mktemp)
  t=$SECONDS
  ASAN_OPTIONS=$native_asan "$target" "${limit[@]}" -max_len=4096 -rss_limit_mb=2048 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="$build/crash-$name-" "$corpus" "$seeds" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
  echo "fuzz_$name: ${runs:-?} executions in $((SECONDS - t)) s, $cov, corpus $(ls "$corpus" | wc -l) new inputs (exit $rc)"
  if [ "$rc" = 0 ] && [ -n "$runs" ]; then
    pass
  else
    grep -E "ERROR|runtime error|SUMMARY|Test unit written|deadly signal" "$log" | head -20
    tail -15 "$log"
    fail 1 "fuzz_$name found a problem (reproduce: $target $build/crash-$name-*)"
  fi
  rm -rf "$corpus" "$log"
done

echo
echo "ci-sanitizers: $((SECONDS - started)) s in all"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
