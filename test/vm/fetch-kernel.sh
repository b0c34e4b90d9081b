#!/usr/bin/env bash
# Fetch Debian's amd64 kernel (which has IPVS as modules) and extract it into the VM cache dir.
# Prints the extracted root (containing boot/vmlinuz-* and lib/modules/<kver>) on stdout; logs go to stderr.
#
# Env: KIPVS_VM_DIR        cache dir (default <repo>/build/vm)
#      KIPVS_VM_KERNEL_PKG pin a package, e.g. linux-image-6.1.0-56-amd64 (default: what linux-image-amd64 depends on)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vmdir=${KIPVS_VM_DIR:-$repo/build/vm}
log() { echo "fetch-kernel: $*" >&2; }

mkdir -p "$vmdir/debs" "$vmdir/kernel"
vmdir=$(cd "$vmdir" && pwd)

# The ABI number (6.1.0-NN) differs per machine/snapshot, so resolve it from the metapackage.
# apt-cache takes ~1 s per call here, so remember the answer until the apt lists change.
lists_sig=$( { echo "${KIPVS_VM_KERNEL_PKG:-}"; stat -c '%n %Y %s' /var/lib/apt/lists/*Packages* 2>/dev/null; } | md5sum | cut -d' ' -f1)
pkg='' ver=''
if [ -f "$vmdir/resolved" ] && [ "$(sed -n 1p "$vmdir/resolved")" = "$lists_sig" ]; then
    read -r pkg ver < <(sed -n 2p "$vmdir/resolved")
fi
if [ -z "$pkg" ]; then
    pkg=${KIPVS_VM_KERNEL_PKG:-}
    if [ -z "$pkg" ]; then
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
            | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }') || true
    fi
    if [ -n "$pkg" ]; then
        ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '/^Version:/ { print $2; exit }') || true
        [ -z "$ver" ] || printf '%s\n%s %s\n' "$lists_sig" "$pkg" "$ver" > "$vmdir/resolved"
    fi
fi
if [ -z "$pkg" ]; then
    # No apt lists (offline, fresh chroot): fall back to a single kernel that is already extracted.
    mapfile -t have < <(find "$vmdir/kernel" -mindepth 2 -maxdepth 2 -name .extracted -printf '%h\n' 2>/dev/null)
    if [ "${#have[@]}" -eq 1 ]; then
        log "cannot resolve linux-image-amd64 (no apt lists?); using cached ${have[0]##*/}"
        echo "${have[0]}"
        exit 0
    fi
    log "cannot resolve linux-image-amd64 via apt-cache; run scripts/setup.sh (apt-get update) or set KIPVS_VM_KERNEL_PKG"
    exit 1
fi

root=$vmdir/kernel/$pkg
stamp=$root/.extracted

# Idempotent: skip download + extraction if this package version is already there.
if [ -f "$stamp" ] && { [ -z "$ver" ] || [ "$(cat "$stamp")" = "$ver" ]; }; then
    echo "$root"
    exit 0
fi

deb=$(ls -t "$vmdir/debs/${pkg}_"*.deb 2>/dev/null | head -n1) || true
if [ -z "$deb" ] || { [ -n "$ver" ] && [ "$(dpkg-deb -f "$deb" Version)" != "$ver" ]; }; then
    log "downloading $pkg ${ver:-(version unknown)}"
    # apt-get download drops privileges to _apt; our cache dir may not be writable by it, so keep root.
    (cd "$vmdir/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg${ver:+=$ver}" >&2)
    deb=$(ls -t "$vmdir/debs/${pkg}_"*.deb | head -n1)
fi
[ -n "$ver" ] || ver=$(dpkg-deb -f "$deb" Version)

log "extracting $(basename "$deb")"
rm -rf "$root.tmp"
mkdir -p "$root.tmp"
dpkg-deb -x "$deb" "$root.tmp"
kver=$(ls "$root.tmp/lib/modules")
[ -f "$root.tmp/boot/vmlinuz-$kver" ] || { log "no vmlinuz-$kver in $deb"; exit 1; }
# Also unpack the xz-compressed bzImage into the plain vmlinux ELF: Debian builds with CONFIG_PVH, so qemu can
# jump straight into it, skipping the in-guest xz decompression that costs ~6 s under TCG. Optional: run.sh
# falls back to vmlinuz if this fails.
if grep -q '^CONFIG_PVH=y' "$root.tmp/boot/config-$kver"; then
    off=$(LC_ALL=C grep -abo -m1 $'\xfd7zXZ' "$root.tmp/boot/vmlinuz-$kver" | head -n1 | cut -d: -f1) || true
    # (process substitution, not a pipe: xz stops at the stream end and tail's SIGPIPE would trip pipefail)
    if [ -n "$off" ] && xz -dc --single-stream < <(tail -c +"$((off + 1))" "$root.tmp/boot/vmlinuz-$kver") \
            > "$root.tmp/boot/vmlinux-$kver" 2>/dev/null \
        && [ "$(head -c4 "$root.tmp/boot/vmlinux-$kver")" = $'\x7fELF' ]; then
        log "unpacked vmlinux-$kver for PVH boot"
    else
        log "could not unpack vmlinux from vmlinuz (not xz?); booting the bzImage"
        rm -f "$root.tmp/boot/vmlinux-$kver"
    fi
fi
# The package ships no modules.dep (postinst runs depmod); generate it so we can compute dependency closures.
depmod -b "$root.tmp" "$kver"
echo "$ver" > "$root.tmp/.extracted"
rm -rf "$root"
mv "$root.tmp" "$root"
# Keep only the .deb we use.
find "$vmdir/debs" -name "${pkg}_*.deb" ! -name "$(basename "$deb")" -delete
echo "$root"
