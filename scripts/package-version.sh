#!/usr/bin/env bash
# package-version.sh: the version the packages carry, for pack.sh and the CI scripts that find them.
#   scripts/package-version.sh            KN_PACKAGE_VERSION when set, else the header's (below)
#   scripts/package-version.sh --header   KN_VERSION_MAJOR.MINOR.PATCH of native/include/kernels.h
# The header is the source of truth; pack.sh checks that the generated bindings agree with it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != --header ] && [ -n "${KN_PACKAGE_VERSION:-}" ]; then echo "$KN_PACKAGE_VERSION"; exit 0; fi
v=""
for part in MAJOR MINOR PATCH; do
  v+=$(sed -n "s/^#define KN_VERSION_${part} \\([0-9][0-9]*\\).*/\\1/p" native/include/kernels.h).
done
echo "${v%.}"
