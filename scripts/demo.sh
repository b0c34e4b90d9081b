#!/usr/bin/env bash
# The README's first command: build kipvs and run its main job, `kipvs reconcile`, on the bundled example
# cluster (examples/cluster.json) on a real IPVS kernel (this host's, or Debian's kernel in qemu).
# Usage: scripts/demo.sh            (run scripts/setup.sh first on a fresh machine)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || meson setup build
ninja -C build
exec test/vm/with-ipvs.sh --timeout 900 -- bash scripts/demo-node.sh
