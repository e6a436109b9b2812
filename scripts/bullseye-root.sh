#!/usr/bin/env bash
# bullseye-root.sh: makes (once) a Debian 11 "bullseye" root, glibc 2.31, and prints its path.
# It has two uses:
#   - the sysroot the released libkernels.so is built against (native/cmake/sysroot-bullseye.cmake,
#     selected by build.sh): linking against glibc 2.31 and bullseye's GCC 10 static libstdc++ keeps the
#     library's symbol versions at GLIBC_2.31 or older, the floor packaging/check-package.cs enforces
#     (Ubuntu 20.04, RHEL 9, Debian 11 and later);
#   - the old system scripts/ci-bullseye.sh runs the self-test and a consumer program in (chroot).
# Made with debootstrap (a Debian package, scripts/install-prereqs.sh installs it) from the same package
# source this machine's apt uses (read from /etc/apt/sources.list.d/debian.sources, never written here):
# 33-112 s here and 294 MB. Needs root (debootstrap, chroot). Idempotent: a complete root (its stamp
# names the same packages) is reused as it is; a half-made one (interrupted) is never used: the root is
# made in DIR.tmp and renamed to DIR only once it is complete and checked.
#   scripts/bullseye-root.sh            make it if needed; prints the path on the last line
#   scripts/bullseye-root.sh --path     only print where it is (or would be); makes nothing
# Environment: KN_BULLSEYE_ROOT (default /var/cache/kernels/bullseye-root: one place for every user and
# checkout of the machine, since making it needs root but building against it does not).
set -euo pipefail
root=${KN_BULLSEYE_ROOT:-/var/cache/kernels/bullseye-root}
[ "${1:-}" = --path ] && { echo "$root"; exit 0; }

# libc6-dev + libstdc++-10-dev (pulls libgcc-10-dev, linux-libc-dev): headers, crt files, libc.so and
# the GCC 10 static C++ runtime and unwinder that clang links in; opencl-c-headers: CL/cl.h for the
# OpenCL backend (loaded at run time, so only the headers). libicu67: what a .NET program on a
# real bullseye/Ubuntu 20.04 machine finds for globalisation (the consumer test runs without the
# invariant mode).
packages="libc6-dev,libstdc++-10-dev,libgcc-10-dev,linux-libc-dev,opencl-c-headers,libicu67"
stamp="$root/.kernels-bullseye-root"

die() { printf 'bullseye-root: %s\n' "$*" >&2; exit 1; }

if [ -f "$stamp" ] && [ "$(sed -n 's/^packages: //p' "$stamp")" = "$packages" ]; then
  echo "bullseye-root: reusing $root ($(sed -n 's/^glibc: //p' "$stamp"), made $(sed -n 's/^made: //p' "$stamp"))"
  echo "$root"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (debootstrap and chroot): run it with sudo, or set KN_BULLSEYE_ROOT to a root someone made"
command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap (scripts/install-prereqs.sh does)"
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || die "$sources not found: no Debian package source to make the root from"
# The URI of the stanza serving the release itself (not -security), as the non-free sources file is derived.
uri=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && $2 !~ /security/ { print u; exit }' "$sources")
[ -n "$uri" ] || die "no URIs line found in $sources"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# Anything mounted below a half-made root (debootstrap mounts /proc and /sys while it works) goes
# before the folder does; --one-file-system keeps rm out of whatever could not be unmounted.
remove_tree() {
  local dir=$1 m
  [ -e "$dir" ] || return 0
  for m in $(findmnt -rn -o TARGET | grep -F "$dir/" | sort -r); do umount -l "$m" || true; done
  rm -rf --one-file-system "$dir"
}

started=$(date +%s)
tmp="$root.tmp"
remove_tree "$tmp"
mkdir -p "$(dirname "$root")"
echo "bullseye-root: debootstrap --variant=minbase bullseye $tmp $uri (include: $packages)"
if ! debootstrap --variant=minbase --keyring="$keyring" --include="$packages" bullseye "$tmp" "$uri" > "$tmp.log" 2>&1; then
  tail -20 "$tmp.log"
  remove_tree "$tmp"
  die "debootstrap failed (log above; the half-made root was removed)"
fi

# A sysroot for the host's linker: absolute symlinks inside it (libfoo.so -> /lib/...) would be followed
# on the host and link against the host's newer libraries; make them relative to the root's own files.
while IFS= read -r link; do
  target=$(readlink "$link")
  ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$tmp$target")" "$link"
done < <(find "$tmp/usr/lib" "$tmp/usr/lib64" "$tmp/usr/include" -type l -lname '/*' 2>/dev/null)

# Check before it is used: the C library is 2.31, the GCC 10 C++ runtime is there.
glibc=$(chroot "$tmp" ldd --version 2>/dev/null | sed -n '1s/.* \([0-9][0-9.]*\)$/\1/p')
[ "$glibc" = 2.31 ] || { remove_tree "$tmp"; die "the root's glibc is '$glibc', expected 2.31"; }
for f in usr/include/c++/10/vector usr/lib/gcc/x86_64-linux-gnu/10/libstdc++.a usr/lib/gcc/x86_64-linux-gnu/10/libgcc_eh.a \
         usr/lib/x86_64-linux-gnu/libc.so usr/lib/x86_64-linux-gnu/crti.o; do
  [ -e "$tmp/$f" ] || { remove_tree "$tmp"; die "the root has no /$f"; }
done
rm -rf "$tmp/var/cache/apt/archives"/*.deb
{ echo "packages: $packages"; echo "glibc: glibc $glibc"; echo "made: $(date -u '+%Y-%m-%d %H:%M UTC') from $uri"; } > "$tmp/.kernels-bullseye-root"
remove_tree "$root"
mv "$tmp" "$root"
rm -f "$tmp.log"
echo "bullseye-root: made $root (glibc $glibc, $(du -sm "$root" | cut -f1) MB) in $(( $(date +%s) - started )) s"
echo "$root"
