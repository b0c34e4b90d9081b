#!/usr/bin/env python3
"""Generate a kubectl-style List of N ClusterIP Services, each with one
EndpointSlice of M ready endpoints, for kipvs parse/desired benchmarks.

usage: gen_cluster.py N_SERVICES N_ENDPOINTS > cluster.json

Service i gets ClusterIP 10.96.0.0/12 + 1 + i (up to ~1M distinct), TCP port
80 -> 8080. Pod IPs come from 10.0.0.0/8 minus 10.96.0.0/12's block, so they
never collide with a ClusterIP; every endpoint is distinct (up to ~15M).
"""
import ipaddress
import json
import sys

SERVICE_NET = ipaddress.ip_network("10.96.0.0/12")
POD_BASE = int(ipaddress.ip_address("10.112.0.0"))   # just past 10.96.0.0/12
POD_LIMIT = int(ipaddress.ip_address("10.255.255.254"))


def service(i):
    ip = str(SERVICE_NET.network_address + 1 + i)
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
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
            "selector": {"app": f"app-{i:06d}"},
            "sessionAffinity": "None",
        },
        "status": {"loadBalancer": {}},
    }


def slice_(i, n_endpoints, next_pod):
    endpoints = []
    for j in range(n_endpoints):
        n = next_pod + j
        addr = f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
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
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def main(argv):
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
    if POD_BASE + n_services * n_endpoints > POD_LIMIT:
        sys.stderr.write("too many endpoints for the pod range\n")
        return 2
    out = sys.stdout
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
