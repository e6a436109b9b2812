#!/usr/bin/env bash
# check-include-graph.sh: holds native/ to its layering (native/CMakeLists.txt draws it):
#   api/ -> kernels/<backend>/ -> core/ -> include/kernels.h
# A file may include from its own layer and the layers below it, never above; a backend never
# includes another backend's files (kernels/philox.h and kernels/cast_rules.h, the headers the
# backends share, sit beside them). Each quoted #include is resolved the way the compiler would: the
# including file's folder, then the library's include path (include, core, kernels, and the generated OpenCL sources).
# Ends with "N passed, N failed" (one check per quoted #include in the library's sources).
set -euo pipefail
cd "$(dirname "$0")/../native"

layer_of() {  # path relative to native/ -> layer name
  case "$1" in
    include/*) echo header ;;
    core/*) echo core ;;
    kernels/cpu/*) echo cpu ;;
    kernels/cuda/*) echo cuda ;;
    kernels/opencl/*) echo opencl ;;
    kernels/*) echo kernels-shared ;;
    api/*) echo api ;;
    generated:*) echo generated ;;
    *) echo unknown ;;
  esac
}

allowed() {  # allowed FROM TO
  local from=$1 to=$2
  [ "$from" = "$to" ] && return 0
  case "$from:$to" in
    core:header) return 0 ;;
    kernels-shared:header | kernels-shared:core) return 0 ;;
    cpu:header | cpu:core | cpu:kernels-shared) return 0 ;;
    cuda:header | cuda:core | cuda:kernels-shared) return 0 ;;
    opencl:header | opencl:core | opencl:kernels-shared | opencl:generated) return 0 ;;
    api:*) [ "$to" != unknown ] && return 0 ;;
  esac
  return 1
}

passed=0
failed=0
while IFS= read -r file; do
  from=$(layer_of "$file")
  dir=$(dirname "$file")
  while IFS= read -r inc; do
    target=""
    for base in "$dir" include core kernels; do
      if [ -f "$base/$inc" ]; then target=$(realpath --relative-to=. "$base/$inc"); break; fi
    done
    if [ -z "$target" ]; then
      if [ "$inc" = opencl_sources.h ]; then target="generated:$inc"; else
        echo "include-graph: $file includes \"$inc\", which is not in native/ (use <...> for system headers)"
        failed=$((failed + 1)); continue
      fi
    fi
    to=$(layer_of "$target")
    if allowed "$from" "$to"; then
      passed=$((passed + 1))
    else
      echo "include-graph: $file ($from) includes $target ($to): that points up or across the layers"
      failed=$((failed + 1))
    fi
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
done < <(find include core kernels api -type f \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) | sort)

echo "include-graph: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
