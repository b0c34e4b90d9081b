#!/bin/sh
# PID 1 of the test VM (busybox ash inside the initramfs; no `set -e`: PID 1 exiting panics the kernel).
# Mounts the host root read-only over 9p, loads the IPVS/netfilter modules, runs the command that run.sh left in
# the results share chrooted in the host root, records its exit code there and powers off.
# Any failure before the command runs leaves no `rc` file, which run.sh reports as a harness error.
PATH=/bin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1

# Console lines carry the guest uptime so a slow or failed boot can be read from console.log.
say() { echo "kipvs-init: [$(cut -d' ' -f1 /proc/uptime)] $*"; }
die() { say "FATAL: $*"; sync; poweroff -f; sleep 5; }
hostname kipvs

# 9p over virtio-pci: these are modules in Debian's kernel, and PCI probing happens synchronously on load.
say "start"
modprobe -a virtio_pci 9pnet_virtio 9p || die "cannot load the 9p/virtio modules"
p9opts=trans=virtio,version=9p2000.L,msize=262144
mount9p() {
    # $1 tag, $2 dir, $3 extra options; retry briefly in case the virtio device shows up late.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        mount -t 9p -o "$p9opts$3" "$1" "$2" 2>/dev/null && return 0
        sleep 0.2
    done
    mount -t 9p -o "$p9opts$3" "$1" "$2"
}
# Root share caching comes from the kernel command line (run.sh: KIPVS_VM_9P_CACHE).
rootcache=none
for arg in $(cat /proc/cmdline); do
    case $arg in kipvs.rootcache=*) rootcache=${arg#*=} ;; esac
done
mount9p hostroot /host ",ro,cache=$rootcache" || die "cannot mount the host root (9p tag hostroot)"
# The host root is read-only: tmpfs on /run (ip netns needs /run/netns; Debian's /var/run is a symlink to /run),
# and the results share below it, so it is reachable from the chroot as /run/kipvs-out.
mount -t tmpfs -o mode=0755 tmpfs /host/run || die "cannot mount tmpfs on /run"
mkdir -p /host/run/kipvs-out /host/run/lock
out=/host/run/kipvs-out
mount9p kipvsout "$out" ,cache=none || die "cannot mount the results share (9p tag kipvsout)"
[ -f "$out/cmd.sh" ] || die "no cmd.sh in the results share"

# MODULES: the preload list chosen by run.sh. Anything else is autoloaded on demand by the kernel, which runs
# /sbin/modprobe from this initramfs (not from the chroot), so that keeps working during the test.
MODULES=
[ -f "$out/vm.conf" ] && . "$out/vm.conf"
if [ -n "$MODULES" ]; then
    # One modprobe call: busybox re-parses modules.dep/modules.alias per invocation, slow under TCG.
    modprobe -a $MODULES 2>/dev/null
    for m in $MODULES; do
        [ -d "/sys/module/$m" ] || say "warning: module $m not loaded"
    done
fi
cut -d' ' -f1 /proc/modules | sort > "$out/modules"
say "modules loaded"

# `modprobe` inside the chroot would look for /lib/modules of the host, which has none (and the host root is
# read-only, so nothing can be mounted there): put a wrapper first in PATH that runs the initramfs modprobe.
mkdir -p /host/run/kipvs-bin
printf '#!/bin/sh\nexec chroot /proc/1/root /sbin/modprobe "$@"\n' > /host/run/kipvs-bin/modprobe
chmod 0755 /host/run/kipvs-bin/modprobe

mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm
mount -t tmpfs -o mode=1777 tmpfs /host/tmp
ip link set lo up

cut -d' ' -f1 /proc/uptime > "$out/uptime_start"
say "running the command"
# env -i: the command gets exactly the environment run.sh wrote into cmd.sh.
env -i chroot /host /bin/bash /run/kipvs-out/cmd.sh </dev/null >"$out/stdout" 2>"$out/stderr"
rc=$?
cut -d' ' -f1 /proc/uptime > "$out/uptime_end"
echo "$rc" > "$out/rc.tmp" && mv "$out/rc.tmp" "$out/rc"
say "command exited with $rc"
sync
poweroff -f
sleep 5
