#!/usr/bin/env bash
# Build the guest initramfs: static busybox + the network/netfilter/IPVS/9p module subset (with deps) + init.sh.
# Usage: mkinitramfs.sh KERNEL_ROOT   (KERNEL_ROOT as printed by fetch-kernel.sh)
# Prints the initramfs path. Cached: rebuilt only when this script, init.sh, busybox or the kernel change.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=${1:?usage: mkinitramfs.sh KERNEL_ROOT}
log() { echo "mkinitramfs: $*" >&2; }

kver=$(ls "$root/lib/modules")
mods=$root/lib/modules/$kver
busybox=$(command -v busybox || true)
# The initramfs has no libc, so busybox must be the static build.
if [ -z "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
    log "need a static busybox (apt-get install busybox-static)"
    exit 1
fi

# Module subset, relative to lib/modules/<kver>/kernel. Whole dirs for everything a network test may touch
# (netfilter, nft, ipvs, bridge, tc, tunnels); the 9p/virtio bootstrap; virtual netdevs. Dependencies are
# added from modules.dep below. crypto/ because modules find algorithms by request_module("crypto-NAME")
# at init, which modules.dep does not show: ip_vs -> libcrc32c needs crc32c_{intel,generic}.
# ~24 MB (7 MB gzipped) instead of the full 390 MB tree.
subset_dirs="net/netfilter net/ipv4 net/ipv6 net/bridge net/sched net/9p net/8021q net/802 net/llc net/sctp
    net/core net/packet net/unix net/xfrm net/key net/psample net/nsh net/mpls crypto arch/x86/crypto
    drivers/net/ipvlan drivers/net/vxlan drivers/net/bonding drivers/net/team"
subset_files="fs/9p/9p.ko drivers/virtio/virtio_pci.ko drivers/net/dummy.ko drivers/net/veth.ko
    drivers/net/macvlan.ko drivers/net/macvtap.ko drivers/net/ifb.ko drivers/net/tun.ko drivers/net/vrf.ko
    drivers/net/geneve.ko drivers/net/nlmon.ko"

key=$( { cat "$0" "$here/init.sh"; echo "$root"; cat "$root/.extracted"; sha256sum "$busybox"; } \
    | sha256sum | cut -c1-16)
out=$(dirname "$root")/../initramfs-$kver-$key.cpio.gz
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
if [ -f "$out" ]; then
    echo "$out"
    exit 0
fi

log "building $(basename "$out")"
stage=$(mktemp -d "${out%.cpio.gz}.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,dev,proc,sys,host,tmp,etc,lib/modules/"$kver"}
ln -s bin "$stage/sbin"
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
done
install -m 0755 "$here/init.sh" "$stage/init"

# Seed list -> closure via modules.dep (depmod lists transitive deps, so one lookup per seed suffices).
(
    cd "$mods"
    for d in $subset_dirs; do [ -d "kernel/$d" ] && find "kernel/$d" -name '*.ko*'; done
    for f in $subset_files; do ls "kernel/$f"* 2>/dev/null || true; done
) | sort -u > "$stage/seeds"
awk -F': *' 'NR == FNR { want[$1] = 1; next }
    ($1 in want) { print $1; n = split($2, d, " "); for (i = 1; i <= n; i++) print d[i] }' \
    "$stage/seeds" "$mods/modules.dep" | sort -u > "$stage/closure"
tar -C "$mods" -cf - -T "$stage/closure" | tar -C "$stage/lib/modules/$kver" -xf -
rm "$stage/seeds" "$stage/closure"
# Debian 12 ships modules uncompressed (CONFIG_MODULE_COMPRESS_NONE). Should a later kernel compress them,
# decompress here rather than rely on busybox modprobe's optional decompressors.
find "$stage/lib/modules" -name '*.ko.xz' -exec xz -d {} +
find "$stage/lib/modules" -name '*.ko.zst' -exec zstd -q -d --rm {} +
find "$stage/lib/modules" -name '*.ko.gz' -exec gzip -d {} +
cp "$mods"/modules.builtin "$mods"/modules.builtin.modinfo "$mods"/modules.order "$stage/lib/modules/$kver/"
# modules.dep + modules.alias for the subset: the kernel's request_module() runs /sbin/modprobe (busybox) here,
# in the initramfs root, even while the test command runs chrooted in the host root.
depmod -b "$stage" "$kver"

echo "kipvs" > "$stage/etc/hostname"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 > "$out.tmp"
mv "$out.tmp" "$out"
# Drop images from older inputs, once no run that picked one can still be about to start qemu with it.
find "$(dirname "$out")" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -name "$(basename "$out")" -mmin +10 -delete
log "built $(basename "$out") ($(du -h "$out" | cut -f1))"
echo "$out"
