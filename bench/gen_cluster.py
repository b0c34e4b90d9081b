#!/usr/bin/env python3
"""Generate a kubectl-style List of N ClusterIP Services, each with one
EndpointSlice of M ready endpoints, for kipvs parse/desired benchmarks.

usage: gen_cluster.py [--bench-table] [--compact] N_SERVICES N_ENDPOINTS > cluster.json

The layout is kubectl's (`kubectl get services,endpointslices -A -o json`):
every Service, sorted by namespace and name, then every EndpointSlice, the
same way; keys sorted (Go's encoding/json: the List's items before its
kind); indented by four spaces (kubectl's json.MarshalIndent).
--compact: one line per item, a Service and its EndpointSlice in turn, as
this script wrote before 2026-11-28 (BENCHMARKS.md's earlier runs).

Service i gets ClusterIP 10.96.0.0/12 + 1 + i (up to ~1M distinct), TCP port
80 -> 8080. Pod IPs come from 10.0.0.0/8 minus 10.96.0.0/12's block, so they
never collide with a ClusterIP; every endpoint is distinct (up to ~15M).

--bench-table: the cluster whose desired IPVS table is exactly the table of
bench/table_gen.h (what bench/kipvs_program and bench/raw_netlink_loop
program): ClusterIP of service i = 10.0.0.0 + i + 1, endpoint j of service i =
172.16.0.0 + ((i * N_ENDPOINTS + j + 1) & 0xFFFFF), port 80 -> 80. Distinct
while N_SERVICES * N_ENDPOINTS < 2^20.
"""
import ipaddress
import json
import sys

SERVICE_NET = ipaddress.ip_network("10.96.0.0/12")
POD_BASE = int(ipaddress.ip_address("10.112.0.0"))   # just past 10.96.0.0/12
POD_LIMIT = int(ipaddress.ip_address("10.255.255.254"))


# --bench-table (see the docstring); set by main().
BENCH_TABLE = False
BENCH_VIP_BASE = 0x0A000000      # 10.0.0.0, as bench/table_gen.h vipFor()
BENCH_DEST_BASE = 0xAC100000     # 172.16.0.0, as bench/table_gen.h destFor()


def dotted(n):
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def service(i):
    if BENCH_TABLE:
        ip = dotted(BENCH_VIP_BASE + i + 1)
    else:
        ip = str(SERVICE_NET.network_address + 1 + i)
    target = 80 if BENCH_TABLE else 8080
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"svc-{i:06d}",
            "namespace": f"ns-{i % 100:03d}",
            "uid": f"00000000-0000-4000-8000-{i:012d}",
            "labels": {"app": f"app-{i:06d}"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target}],
            "selector": {"app": f"app-{i:06d}"},
            "sessionAffinity": "None",
        },
        "status": {"loadBalancer": {}},
    }


def slice_(i, n_endpoints, next_pod):
    endpoints = []
    for j in range(n_endpoints):
        if BENCH_TABLE:
            n = BENCH_DEST_BASE + ((i * n_endpoints + j + 1) & 0xFFFFF)
        else:
            n = next_pod + j
        addr = dotted(n)
        endpoints.append({
            "addresses": [addr],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": f"node-{(i + j) % 50:02d}",
            "zone": f"zone-{(i + j) % 3}",
            "targetRef": {"kind": "Pod", "name": f"app-{i:06d}-{j}", "namespace": f"ns-{i % 100:03d}"},
        })
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{i:06d}-abcde",
            "namespace": f"ns-{i % 100:03d}",
            "labels": {
                "kubernetes.io/service-name": f"svc-{i:06d}",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80 if BENCH_TABLE else 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def kubectl_layout(out, n_services, n_endpoints):
    # Service i is in namespace ns-(i % 100), named svc-(i): sorted by
    # namespace and name, namespace k holds k, k + 100, k + 200, ...
    order = [i for ns in range(100) for i in range(ns, n_services, 100)]
    out.write('{\n    "apiVersion": "v1",\n    "items": [\n')
    first = True
    for make in (lambda i: service(i), lambda i: slice_(i, n_endpoints, POD_BASE + i * n_endpoints)):
        for i in order:
            if not first:
                out.write(",\n")
            first = False
            text = json.dumps(make(i), indent=4, sort_keys=True)
            out.write("        " + text.replace("\n", "\n        "))
    out.write('\n    ],\n    "kind": "List",\n    "metadata": {\n        "resourceVersion": ""\n    }\n}\n')


def main(argv):
    global BENCH_TABLE
    if "--bench-table" in argv[1:]:
        BENCH_TABLE = True
        argv = [a for a in argv if a != "--bench-table"]
    compact = "--compact" in argv[1:]
    argv = [a for a in argv if a != "--compact"]
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    n_services, n_endpoints = int(argv[1]), int(argv[2])
    if n_services < 0 or n_endpoints < 0:
        sys.stderr.write("counts must be >= 0\n")
        return 2
    if n_services + 1 >= SERVICE_NET.num_addresses - 1:
        sys.stderr.write("too many services for 10.96.0.0/12\n")
        return 2
    if BENCH_TABLE and n_services * n_endpoints >= 1 << 20:
        sys.stderr.write("--bench-table: services * endpoints must stay below 2^20\n")
        return 2
    if POD_BASE + n_services * n_endpoints > POD_LIMIT:
        sys.stderr.write("too many endpoints for the pod range\n")
        return 2
    out = sys.stdout
    if not compact:
        kubectl_layout(out, n_services, n_endpoints)
        return 0
    # Streamed item by item: 100k Services fit without holding the document.
    out.write('{"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": [\n')
    first = True
    next_pod = POD_BASE
    for i in range(n_services):
        for obj in (service(i), slice_(i, n_endpoints, next_pod)):
            if not first:
                out.write(",\n")
            first = False
            # dumps, not dump: dump streams through the pure-Python encoder.
            out.write(json.dumps(obj, separators=(",", ":")))
        next_pod += n_endpoints
    out.write("\n]}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
