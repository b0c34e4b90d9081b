#!/usr/bin/env bash
# Install every Debian package kipvs needs to build and to test (incl. the qemu IPVS harness in test/vm).
# Idempotent; run as root, e.g. in a fresh `debootstrap --variant=minbase bookworm` chroot.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

pkgs=(
    # build
    build-essential g++ meson ninja-build pkg-config
    libnl-3-dev libnl-genl-3-dev rapidjson-dev libyaml-dev libgoogle-glog-dev doctest-dev
    # kernel tests: qemu + Debian kernel + busybox initramfs (test/vm), netns/IPVS tools
    qemu-system-x86 busybox-static ipvsadm iproute2 cpio kmod python3 procps xz-utils zstd gzip
)

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root" >&2; exit 1; }

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup.sh: all ${#pkgs[@]} packages installed"
    exit 0
fi

# Refresh the package lists when there are none or they are over a week old; retry once after an update if
# the install still fails (lists can name .debs the mirror no longer has).
lists=/var/lib/apt/lists
updated=0
if ! compgen -G "$lists/*_Packages*" >/dev/null \
    || [ -n "$(find "$lists" -maxdepth 1 -name '*_Packages*' -mtime +7 -print -quit)" ]; then
    apt-get update
    updated=1
fi
echo "setup.sh: installing ${missing[*]}"
if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
    [ "$updated" = 0 ] || exit 1
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
