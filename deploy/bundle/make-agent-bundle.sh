#!/usr/bin/env bash
# Makes the self-contained agent bundle, for machines that are not Debian 12 (the NVIDIA CUDA
# images are Ubuntu 22.04 or 24.04):
#
#   deploy/bundle/make-agent-bundle.sh BUILD_DIR OUT.tar.gz
#
# OUT.tar.gz holds one folder, sched-agent-bundle/:
#   bin/sched-agent     the agent from BUILD_DIR/bin, debug info stripped, RUNPATH $ORIGIN/../lib
#   lib/                the shared libraries it links (gRPC, protobuf, Abseil, OpenSSL, ...), each
#                       with RUNPATH $ORIGIN
#   install-agent.sh    starts the agent on a rented machine (deploy/install-agent.sh)
#   VERSION             the agent's version and the glibc and libstdc++ versions the bundle needs
#
# Left to the machine: glibc (libc, libm, libpthread, libdl, librt, libresolv, ld-linux...), which
# cannot be carried along, and the C++ runtime (libstdc++, libgcc_s), which every glibc system
# has: Debian 12's libstdc++ asks glibc for 2.36 (arc4random), which Ubuntu 22.04 (2.35) lacks.
# The libraries are found through RUNPATH, not LD_LIBRARY_PATH, which the jobs would inherit
# (their python and CUDA libraries would then load the bundle's OpenSSL or zlib). Needs patchelf
# (Debian package patchelf), ldd, objdump (binutils) and strip.
#
# Prints the highest GLIBC_ and GLIBCXX_ symbol versions the bundle asks for: the machine's
# glibc and libstdc++ must have them.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR OUT.tar.gz" >&2
  exit 2
fi
build_dir=$1
out=$2
agent=$build_dir/bin/sched-agent
[[ -x $agent ]] || { echo "$0: $agent not found: build sched-agent first" >&2; exit 1; }
for tool in patchelf ldd objdump strip tar; do
  command -v "$tool" >/dev/null ||
    { echo "$0: $tool not found (Debian packages patchelf, binutils, libc-bin, tar)" >&2; exit 1; }
done
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
install_script=$here/../install-agent.sh
[[ -f $install_script ]] || { echo "$0: $install_script not found" >&2; exit 1; }

# Libraries of glibc and the C++ runtime: left to the machine (see above).
is_system_lib() {
  case $(basename "$1") in
    libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | libresolv.so.* | \
      libutil.so.* | libanl.so.* | libnsl.so.* | libBrokenLocale.so.* | libmvec.so.* | \
      libnss_*.so.* | libthread_db.so.* | libcrypt.so.* | ld-linux*.so.* | linux-vdso.so.* | \
      libstdc++.so.* | libgcc_s.so.*)
      return 0 ;;
  esac
  return 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/sched-agent-bundle.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/sched-agent-bundle
mkdir -p "$root/bin" "$root/lib"

cp "$agent" "$root/bin/sched-agent"
strip --strip-debug "$root/bin/sched-agent"
# shellcheck disable=SC2016 # $ORIGIN is for the dynamic loader, not the shell
patchelf --set-rpath '$ORIGIN/../lib' "$root/bin/sched-agent"

# ldd lists the whole tree of dependencies, each once.
missing=$(ldd "$agent" | awk '/=> not found/ {print $1}')
[[ -z $missing ]] || { echo "$0: $agent: libraries not found: $missing" >&2; exit 1; }
while read -r lib; do
  is_system_lib "$lib" && continue
  dest=$root/lib/$(basename "$lib")
  cp -L "$lib" "$dest"
  chmod 0644 "$dest"
  strip --strip-debug "$dest"
  # shellcheck disable=SC2016
  patchelf --set-rpath '$ORIGIN' "$dest"
done < <(ldd "$agent" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')

cp "$install_script" "$root/install-agent.sh"
chmod 0755 "$root/install-agent.sh" "$root/bin/sched-agent"

# The highest symbol versions asked for by the bundle's files: what the machine must provide.
max_version() {
  local prefix=$1
  local f
  for f in "$root/bin/sched-agent" "$root"/lib/*; do
    objdump -T "$f" | awk '/\*UND\*/' | grep -o "(${prefix}_[0-9.]*)" | tr -d '()' || true
  done | sort -uV | tail -n 1
}
glibc=$(max_version GLIBC)
glibcxx=$(max_version GLIBCXX)
version=$("$agent" --detect_only --gpu_detection=none --work_dir="$work" 2>/dev/null |
  sed -n 's/.*"agent_version": *"\([^"]*\)".*/\1/p')
{
  echo "sched-agent ${version:-unknown}"
  echo "needs glibc ${glibc#GLIBC_} (max symbol version $glibc)"
  echo "needs libstdc++ with $glibcxx"
} >"$root/VERSION"

# The same bytes for the same inputs: sorted names, fixed owner and time.
mkdir -p "$(dirname "$out")"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" \
  -czf "$out" sched-agent-bundle
echo "made $out: $(du -h "$out" | cut -f1), sched-agent ${version:-unknown}," \
  "$(find "$root/lib" -type f | wc -l) libraries"
echo "max GLIBC symbol version: $glibc"
echo "max GLIBCXX symbol version: $glibcxx (libstdc++ left to the machine)"
