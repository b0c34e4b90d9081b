#!/usr/bin/env bash
# The command line as a user meets it, without a kernel: usage errors exit 2 with a message, help exits 0,
# and input errors found before any kernel work are named. Run from scripts/test.sh (any host).
set -uo pipefail
cd "$(dirname "$0")/.."
KIPVS=${KIPVS:-build/kipvs}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
PASS=0 FAIL=0
check() { local what=$1; shift; if "$@"; then echo "ok: $what"; PASS=$((PASS + 1)); else echo "FAIL: $what"; FAIL=$((FAIL + 1)); fi; }
# run ARGS...: exit code in $rc, stdout in $tmp/out, stderr in $tmp/err
run() { "$KIPVS" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; rc=$?; }
has() { grep -qF -- "$2" "$tmp/$1"; }

run --help
check "--help: exit 0, the reconcile flags listed" [ "$rc" = 0 ]
check "--help names --nodeport-range as the cluster's range" has out "the cluster's --service-node-port-range"
run
check "no command: exit 2" [ "$rc" = 2 ]
run bogus
check "unknown command: exit 2" [ "$rc" = 2 ]
run version extra
check "version with an argument: exit 2" [ "$rc" = 2 ]

run reconcile -f - -f - --dry-run
check "-f - twice: exit 2" [ "$rc" = 2 ]
check "-f - twice: says stdin was given twice" has err "stdin given twice"
run reconcile -f x.json --node-ip 10.0.0.300
check "--node-ip with a bad address: exit 2, named" bash -c "[ $rc = 2 ] && grep -qF -- '--node-ip' '$tmp/err'"
# (x.json does not exist and this host may have no IPVS: either alone exits 2, so the message is the check.)
run reconcile -f x.json --scheduler nope
check "--scheduler unknown: exit 2" [ "$rc" = 2 ]
check "--scheduler unknown: named" has err '--scheduler: unknown scheduler "nope"'
run reconcile --dry-run
check "reconcile without -f: exit 2" [ "$rc" = 2 ]
check "reconcile without -f: says -f is needed" has err 'give at least one -f FILE'

# Input that does not parse is named with its place, and nothing is changed; the kernel is never needed
# to say so (this host may have no IPVS).
printf '{"apiVersion":"v1","kind":"List","items":[}' >"$tmp/bad.json"
run reconcile -f "$tmp/bad.json" --dry-run
check "malformed JSON: exit 2" [ "$rc" = 2 ]
check "malformed JSON: file, byte, line and column" has err "bad.json: invalid JSON at byte 42 (line 1, column 43)"
printf '\xef\xbb\xbf{"apiVersion":"v1","kind":"List","items":[}' >"$tmp/bom.json"
run reconcile -f "$tmp/bom.json" --dry-run
check "JSON after a byte order mark: read (the error is past it, at the file's offset)" \
    has err "bom.json: invalid JSON at byte 45 (line 1, column 46)"
printf 'apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  type: "x\xffy"\n' >"$tmp/bad.yaml"
run reconcile -f "$tmp/bad.yaml" --dry-run
check "YAML with a byte that is not UTF-8: its line and column" has err "bad.yaml: invalid YAML at line 6, column 11"
check "... and nothing was changed" has err "nothing was changed"

# An invalid object is named whether or not this host has IPVS (without it: checked before the kernel error).
printf '%s' '{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","namespace":"b","annotations":{"kipvs.io/scheduler":"wlcc"}},"spec":{"clusterIP":"10.0.0.1","ports":[{"port":80}]}}]}' >"$tmp/invalid.json"
run reconcile -f "$tmp/invalid.json" --dry-run --node-ip 192.0.2.1
check "an invalid Service is named (a dry run, kernel or not)" has err 'Service b/a: unknown IPVS scheduler "wlcc"'

echo "cli: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
