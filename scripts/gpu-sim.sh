#!/usr/bin/env bash
# gpu-sim.sh: runs the CUDA kernels on a simulated GPU (GPGPU-Sim, functional mode, a simulated Volta)
# on a machine without one. CI's "gpu-sim" stage; also the way to check a CUDA change locally.
#   scripts/gpu-sim.sh                 simulator (cached), library, native self-test, NUnit subset
#   scripts/gpu-sim.sh --selftest-only only the native self-test
#   scripts/gpu-sim.sh --nunit-only    only the NUnit subset (library and simulator must be built)
# Ends with "gpu-sim: N passed, N failed, N skipped" (self-test cases on cuda:0 + NUnit tests).
#
# 1. Builds GPGPU-Sim from ../shared/gpgpu-sim (the accel-sim fork's source as a tarball plus our five
#    fixes to it; see its README) and scripts/gpgpu-sim-kernel-binary.patch (a sixth: the CUDA version
#    check reads PYTORCH_BIN, so a .NET test host that dlopen()s libkernels runs too) into
#    ~/.cache/kernels/gpgpu-sim/<hash of tarball, patches and compilers>, once per machine (7 to 17
#    minutes on 2 cores, depending on what else runs), then reused.
# 2. Builds libkernels for it in build/gpu-sim: CUDA on, OpenCL off, shared cudart (the simulator
#    replaces libcudart.so), compute_70 PTX only (it runs PTX, not SASS), no -lineinfo (its PTX
#    parser rejects the debug sections). The package build keeps static cudart, SASS and -lineinfo.
# 3. kernels_selftest --device cuda:0 --quick --require cuda: every CUDA kernel against the float64
#    reference, on the quick shapes (bigger ones would take hours in the simulator).
# 4. NUnit: the kernel tests' cuda:0 fixtures and the cross-backend CNN test, with
#    KERNELS_REQUIRE_CUDA=1 so a missing CUDA device fails instead of skipping.
# Environment: GPGPU_SIM_DIR (default ../shared/gpgpu-sim beside the repository), GPU_SIM_CACHE
#   (default ~/.cache/kernels/gpgpu-sim), BUILD_DIR (default build/gpu-sim), JOBS (default nproc),
#   SIM_CONFIG (default SM7_QV100), SKIP_APT=1 (install no packages).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=all
for a in "$@"; do
  case $a in
    --selftest-only) mode=selftest ;;
    --nunit-only) mode=nunit ;;
    *) echo "gpu-sim.sh: unknown argument '$a' (expected --selftest-only or --nunit-only)" >&2; exit 2 ;;
  esac
done
sim_src=${GPGPU_SIM_DIR:-$root/../shared/gpgpu-sim}
cache_root=${GPU_SIM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kernels/gpgpu-sim}
build_dir=${BUILD_DIR:-build/gpu-sim}
case $build_dir in /*) ;; *) build_dir=$root/$build_dir ;; esac
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
sim_config=${SIM_CONFIG:-SM7_QV100}
say() { printf '\n== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
die() { printf 'gpu-sim.sh: %s\n' "$*" >&2; echo "gpu-sim: 0 passed, 1 failed, 0 skipped"; exit 1; }

tarball=$(ls "$sim_src"/gpgpu-sim-*.tar.xz 2>/dev/null | head -1 || true)
[ -n "$tarball" ] && [ -f "$sim_src/gpgpu-sim-fixes.patch" ] ||
  die "no GPGPU-Sim source in $sim_src (expected gpgpu-sim-*.tar.xz and gpgpu-sim-fixes.patch; set GPGPU_SIM_DIR)"

# ---- 0. Packages: nvcc 11.8 and the simulator's build tools ------------------------------------
if [ "${SKIP_APT:-0}" != 1 ]; then
  bash scripts/install-prereqs.sh --with-cuda --with-gpu-sim
fi
command -v nvcc >/dev/null || die "nvcc not found (scripts/install-prereqs.sh --with-cuda installs it)"

# ---- 1. GPGPU-Sim, built once per source/patch/compiler and cached -----------------------------
# The key covers everything the build depends on, so a new patch or compiler gets its own folder.
patches=("$sim_src/gpgpu-sim-fixes.patch" "$root/scripts/gpgpu-sim-kernel-binary.patch")
key=$( { sha256sum "$tarball" "${patches[@]}" | cut -d' ' -f1
         g++ --version | head -1; nvcc --version | tail -1; } | sha256sum | cut -c1-16)
sim=$cache_root/$key
mkdir -p "$cache_root"
# One build at a time per machine; a second run waits for the first and then reuses its result.
exec 9>"$cache_root/.lock"
flock 9
# CUDA_INSTALL_PATH: GPGPU-Sim wants bin/{nvcc,cuobjdump,ptxas} and include/ under one root;
# Debian spreads the toolkit over /usr, so the cache holds a small tree of links.
cuda=$cache_root/cuda-links
mkdir -p "$cuda/bin"
for t in nvcc cuobjdump ptxas nvdisasm fatbinary nvlink nvprune cu++filt; do
  p=$(command -v "$t" || true); [ -n "$p" ] && ln -sfn "$p" "$cuda/bin/$t"
done
ln -sfn /usr/include "$cuda/include"
ln -sfn "/usr/lib/$(gcc -print-multiarch)" "$cuda/lib64"
export CUDA_INSTALL_PATH=$cuda
# setup_environment puts the simulator's libcudart.so first on LD_LIBRARY_PATH; the library must be
# linked against the real one, so keep the original for the build.
orig_ld_library_path=${LD_LIBRARY_PATH:-}
if [ ! -f "$sim/.complete" ]; then
  # A folder without the stamp is a build that was interrupted: start it again from the source.
  rm -rf "$sim"
  say "GPGPU-Sim build into $sim (once per machine, 7 to 17 minutes on 2 cores)"
  mkdir -p "$sim"
  tar -xJf "$tarball" -C "$sim" --strip-components=1
  for p in "${patches[@]}"; do patch -d "$sim" -p1 -s < "$p" || die "$p does not apply to $tarball"; done
  (
    set +eu
    # shellcheck disable=SC1091
    source "$sim/setup_environment" release >"$sim/setup_environment.log" 2>&1 || exit 1
    set -eu
    nice make -C "$sim" -j"$jobs" >"$sim/build.log" 2>&1
  ) || { tail -30 "$sim/build.log" 2>/dev/null; die "GPGPU-Sim build failed (log: $sim/build.log)"; }
  touch "$sim/.complete"
fi
# It prints git errors (the tarball has no .git) and sets LD_LIBRARY_PATH and GPGPUSIM_CONFIG.
set +eu
# shellcheck disable=SC1091
source "$sim/setup_environment" release >/dev/null 2>&1
set -eu
sim_lib_dir=$sim/lib/$GPGPUSIM_CONFIG
[ -f "$sim_lib_dir/libcudart.so" ] || die "GPGPU-Sim built, but $sim_lib_dir/libcudart.so is missing"
flock -u 9
echo "GPGPU-Sim libcudart: $sim_lib_dir"

# ---- 2. libkernels for the simulator, in its own build folder -----------------------------------
if [ "$mode" != nunit ]; then
  say "libkernels for GPGPU-Sim in $build_dir (compute_70 PTX, shared cudart, no -lineinfo)"
  host=(); command -v clang++-14 >/dev/null && host=(-DCMAKE_CUDA_HOST_COMPILER=clang++-14)  # nvcc 11.8 refuses g++ 12
  LD_LIBRARY_PATH=$orig_ld_library_path cmake -S native -B "$build_dir" -DCMAKE_BUILD_TYPE=Release \
    -DKN_WITH_CUDA=ON -DKN_WITH_OPENCL=OFF "${host[@]}" -DKN_CUDA_ARCHITECTURES=70-virtual \
    -DKN_CUDA_RUNTIME=Shared -DKN_CUDA_LINEINFO=OFF >/dev/null || die "cmake configure of $build_dir failed"
  LD_LIBRARY_PATH=$orig_ld_library_path nice cmake --build "$build_dir" -j "$jobs" >"$build_dir/build.log" 2>&1 ||
    { tail -40 "$build_dir/build.log"; die "libkernels build failed (log: $build_dir/build.log)"; }
fi
[ -f "$build_dir/libkernels.so" ] || die "no $build_dir/libkernels.so (run without --nunit-only first)"

# ---- Run environment --------------------------------------------------------------------------
# The simulator reads gpgpusim.config (and the interconnect file it names) from the current folder.
run_dir=$build_dir/run
mkdir -p "$run_dir"
cp "$sim/configs/tested-cfgs/$sim_config/"* "$run_dir/"
# Functional mode: the PTX is executed warp by warp, without the cycle model (hours otherwise).
sed -i 's/^-gpgpu_ptx_sim_mode .*/-gpgpu_ptx_sim_mode 1/' "$run_dir/gpgpusim.config"
rm -f "$run_dir"/_app_cuda_version_* "$run_dir"/_cuobjdump_* "$run_dir"/*.ptx "$run_dir"/*.ptxas
# LD_LIBRARY_PATH (from setup_environment): the simulator's libcudart.so comes first.
# PYTORCH_BIN: GPGPU-Sim extracts the PTX with cuobjdump from /proc/self/exe unless this names
#   another file; our kernels are in libkernels.so, not in the test program.
# CUDA_LAUNCH_BLOCKING=1: each stream operation finishes before the call returns, so the host and
#   the simulator thread do not both busy-wait (3 times faster on 2 cores).
export PYTORCH_BIN=$build_dir/libkernels.so CUDA_LAUNCH_BLOCKING=1
case ":$LD_LIBRARY_PATH:" in *":$sim_lib_dir:"*) ;; *) die "setup_environment did not put $sim_lib_dir on LD_LIBRARY_PATH" ;; esac

# The simulator's chatter (a few lines per kernel launch) stays in the log files; only what
# matters is printed.

total_p=0 total_f=0 total_s=0 overall_rc=0

# ---- 3. The native self-test on cuda:0 --------------------------------------------------------
if [ "$mode" != nunit ]; then
  say "kernels_selftest --device cuda:0 --quick --require cuda under GPGPU-Sim ($sim_config, functional)"
  log=$run_dir/selftest-full.log
  start=$(date +%s)
  set +e
  (cd "$run_dir" && "$build_dir/kernels_selftest" --device cuda:0 --quick --require cuda --verbose) >"$log" 2>&1
  rc=$?
  set -e
  # Cases per family (the first word of each case's name), then the failures and the counts.
  awk '($1 == "ok" || $1 == "FAIL" || $1 == "SKIP") && $2 == "cuda:0" { f = $3; sub(/:$/, "", f); n[f]++; if ($1 == "FAIL") bad[f]++; if ($1 == "SKIP") sk[f]++ }
       END { for (f in n) printf "  %-28s %5d cases, %3d failed, %3d skipped\n", f, n[f], bad[f], sk[f] }' "$log" | sort
  grep -E '^(FAIL|SKIP|backend|device|testing|global|cuda|selftest|kernels_selftest)' "$log" || true
  echo "kernels_selftest: exit status $rc after $(( $(date +%s) - start )) s (full log: $log)"
  line=$(grep -E '^selftest: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1 || true)
  if [ -z "$line" ]; then
    echo "gpu-sim.sh: the self-test printed no summary (it crashed?); last lines of its log:"
    tail -20 "$log"
    total_f=$((total_f + 1))
  else
    total_p=$((total_p + $(sed -E 's/^selftest: ([0-9]+) passed.*/\1/' <<<"$line")))
    total_f=$((total_f + $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")))
    s=$(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$line"); total_s=$((total_s + ${s:-0}))
  fi
  [ "$rc" = 0 ] || overall_rc=1
fi

# ---- 4. NUnit against the simulator -----------------------------------------------------------
# The test programs are built as usual, then copied into $build_dir/nunit with the simulator's
# libkernels beside them (where the bindings look first), so the ordinary bin/ folders and their
# library stay untouched. KERNELS_REQUIRE_CUDA=1: a missing cuda:0 fails instead of skipping.
# The filter keeps the cuda:0 fixtures (CPU and OpenCL run in the test stage) and the CUDA
# cross-backend tests, the cuda cases of DtypeTests (casts, integer layout, labels and ids on the device)
# and those of SliceTests (narrow / concatenate / stack: the strided copy
# into a view). It leaves out the cases whose size makes them slow to simulate (100003-element
# elementwise, 3000001-element sums, the 257x511x129 GEMM, MNIST-sized convolutions, 9x600 batch
# norm, the widest softmax rows): about half the simulated time for a tenth of the tests. The same
# kernels run at those paths on smaller shapes here and in the self-test's quick set.
# NUNIT_FILTER=FullyQualifiedName~cuda:0 runs all of them (about twice as long).
big_cases='100003 3000001 257x511x129 MNIST 9x600x1 4099 128,1000 1000,7'
nunit_filter_kernels="FullyQualifiedName~cuda:0"
for b in $big_cases; do nunit_filter_kernels+="&Name!~$b"; done
nunit_filter_kernels=${NUNIT_FILTER:-$nunit_filter_kernels}
if [ "$mode" != selftest ]; then
  for project in Kernels.Tests Kernels.Nn.Tests; do
    say "NUnit $project on cuda:0 under GPGPU-Sim"
    nice dotnet build "tests/$project" -c Release -nologo -v quiet >"$run_dir/$project-build.log" 2>&1 ||
      { tail -20 "$run_dir/$project-build.log"; die "dotnet build tests/$project failed"; }
    dest=$build_dir/nunit/$project
    rm -rf "$dest"; mkdir -p "$dest"
    cp -r "tests/$project/bin/Release/net10.0/." "$dest/"
    cp "$build_dir/libkernels.so" "$dest/libkernels.so"
    # NUnit runs the tests in the assembly's folder, where the simulator then looks for its config.
    cp "$run_dir"/gpgpusim.config "$run_dir"/*.icnt "$run_dir"/*.xml "$dest/"
    # The recurrent layers' cuda cases run except two that loop over many batches (a training run and a
    # leak check): thousands of simulated launches each, minutes under GPGPU-Sim for nothing new.
    case $project in
      Kernels.Tests) filter=$nunit_filter_kernels ;;
      Kernels.Nn.Tests) filter=${NUNIT_FILTER:-(FullyQualifiedName~CrossBackendTests&Name~CUDA)|(FullyQualifiedName~PermuteTests&Name~cuda)|(FullyQualifiedName~SliceTests&Name~cuda)|(FullyQualifiedName~EmbeddingTests&Name~cuda)|(FullyQualifiedName~CompareTests&Name~cuda)|(FullyQualifiedName~DtypeTests&Name~cuda)|(FullyQualifiedName~RecurrentCellTests&Name~cuda)|(FullyQualifiedName~RecurrentTorchTests&Name~cuda)|(FullyQualifiedName~RecurrentLayerTests&Name~cuda&Name!~Stacked_layers&Name!~inside_a_scope)|(FullyQualifiedName~OnnxImportTests&Name~cuda&Name!~ResNet18)|(FullyQualifiedName~OnnxExportTests&Name~cuda)|(FullyQualifiedName~ModelExchangeTests&Name~cuda)|(FullyQualifiedName~SummaryTests&Name~cuda)|(FullyQualifiedName~SafeTensorsTests&Name~cuda)|(FullyQualifiedName~ModelFileTests&Name~cuda)} ;;
    esac
    log=$run_dir/$project.log
    start=$(date +%s)
    set +e
    (cd "$dest" && KERNELS_REQUIRE_CUDA=1 "$dest/$project" --filter "$filter" --no-progress --no-ansi --output detailed) >"$log" 2>&1
    rc=$?
    set -e
    # (each grep may find nothing: || true keeps set -e and pipefail from ending the script there)
    grep -E '^ *(failed|skipped) ' "$log" | head -50 || true
    grep -E '^(Test run summary|  total|  failed|  succeeded|  skipped|  duration)' "$log" || true
    echo "$project: exit status $rc after $(( $(date +%s) - start )) s (full log: $log)"
    p=$(sed -n 's/^ *succeeded: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^ *failed: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    s=$(sed -n 's/^ *skipped: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    if [ -z "$p" ]; then
      echo "gpu-sim.sh: no summary from $project (counted as a failure); last lines of its log:"; tail -20 "$log"
      p=0 f=1 s=0
    fi
    # A run that found no test at all would pass vacuously: a filter that matches nothing is a failure.
    [ "$p" != 0 ] || [ "$f" != 0 ] || { echo "gpu-sim.sh: the filter '$filter' ran no test in $project"; f=1; }
    [ "$rc" = 0 ] || [ "$f" != 0 ] || f=1
    total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + s))
    [ "$rc" = 0 ] || overall_rc=1
  done
fi

echo
echo "gpu-sim: $total_p passed, $total_f failed, $total_s skipped"
[ "$overall_rc" = 0 ] && [ "$total_f" = 0 ]
