#!/usr/bin/env python3
"""Seeds for test/fuzz/parse_fuzz.cc: small kubectl-like Lists (the shape of
bench/gen_cluster.py) in several layouts: compact, kubectl's pretty-printed
sorted keys, typed Lists without item kinds, kind before/after items, every
field the parser reads. Each under 16 KiB (the fuzzer's -max_len).

usage: gen_seeds.py OUTDIR
"""
import json
import os
import sys


def service(i, full=False):
    ip = f"10.96.0.{i + 1}"
    s = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"svc-{i}",
            "namespace": f"ns-{i % 3}",
            "labels": {"app": f"app-{i}"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ipFamilies": ["IPv4"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
            "sessionAffinity": "None",
        },
        "status": {"loadBalancer": {}},
    }
    if full:
        s["metadata"]["labels"]["service.kubernetes.io/service-proxy-name"] = "kipvs"
        s["metadata"]["annotations"] = {"kipvs.io/scheduler": "wrr", "other": "x"}
        s["spec"].update({
            "type": "LoadBalancer",
            "clusterIPs": [ip, "fd00::1"],
            "ipFamilies": ["IPv4", "IPv6"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web", "nodePort": 30080},
                      {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}],
            "externalIPs": ["203.0.113.1"],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
            "externalTrafficPolicy": "Local",
            "internalTrafficPolicy": "Cluster",
            "healthCheckNodePort": 32000,
            "externalName": "",
            "trafficDistribution": "PreferClose",
            "loadBalancerSourceRanges": ["192.0.2.0/24"],
        })
        s["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.9", "ipMode": "VIP"}, {"hostname": "lb.example"}]}}
    return s


def slice_(i, n, full=False):
    eps = []
    for j in range(n):
        e = {
            "addresses": [f"10.112.{i}.{j + 1}"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": f"node-{j % 2}",
            "zone": f"zone-{j % 3}",
            "targetRef": {"kind": "Pod", "name": f"app-{i}-{j}", "namespace": f"ns-{i % 3}"},
        }
        if full:
            e["hints"] = {"forZones": [{"name": "zone-0"}], "forNodes": [{"name": "node-0"}]}
        eps.append(e)
    s = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{i}-abcde",
            "namespace": f"ns-{i % 3}",
            "labels": {"kubernetes.io/service-name": f"svc-{i}",
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
        },
        "addressType": "IPv4" if not full else "IPv6",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }
    if full:
        s["ports"].append({"name": None, "port": None})
        eps[0]["addresses"] = ["fd00::10", "fd00::11"]
    return s


def items(n_svc, n_ep, full=False, drop_kind=False):
    out = []
    for i in range(n_svc):
        for o in (service(i, full and i == 0), slice_(i, n_ep, full and i == 0)):
            if drop_kind:
                o = dict(o)
                del o["kind"]
            out.append(o)
    return out


def doc(kind, its, kind_first=True):
    d = {"apiVersion": "v1"}
    if kind_first:
        d["kind"] = kind
    d["items"] = its
    if not kind_first:
        d["kind"] = kind
    d["metadata"] = {"resourceVersion": ""}
    return d


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    seeds = {}
    for n_svc, n_ep in ((1, 1), (2, 2), (3, 1), (3, 2)):
        its = items(n_svc, n_ep)
        seeds[f"compact-{n_svc}x{n_ep}"] = json.dumps(doc("List", its), separators=(",", ":"))
        # kubectl: 4-space indentation, keys sorted ("items" before "kind")
        seeds[f"kubectl-{n_svc}x{n_ep}"] = json.dumps(doc("List", its), indent=4, sort_keys=True) + "\n"
        seeds[f"spaced-{n_svc}x{n_ep}"] = json.dumps(doc("List", its, kind_first=False))
    seeds["full-compact"] = json.dumps(doc("List", items(2, 2, full=True)), separators=(",", ":"))
    seeds["full-kubectl"] = json.dumps(doc("List", items(2, 2, full=True)), indent=4, sort_keys=True)
    svcs = [service(i) for i in range(3)]
    for s in svcs:
        del s["kind"]
    slcs = [slice_(i, 2) for i in range(3)]
    for s in slcs:
        del s["kind"]
    seeds["servicelist-first"] = json.dumps(doc("ServiceList", svcs), indent=2)
    seeds["servicelist-last"] = json.dumps(doc("ServiceList", svcs, kind_first=False), indent=2)
    seeds["slicelist-first"] = json.dumps(doc("EndpointSliceList", slcs), separators=(",", ":"))
    seeds["slicelist-sorted"] = json.dumps(doc("EndpointSliceList", slcs), indent=4, sort_keys=True)
    seeds["single-service"] = json.dumps(service(0, True), indent=4, sort_keys=True)
    seeds["single-slice"] = json.dumps(slice_(0, 2, True), separators=(",", ":"))
    # Errors mixed in: a bad port, no name, a non-object item, a Pod.
    its = items(2, 1)
    its[0]["spec"]["ports"][0]["port"] = "eighty"
    del its[1]["metadata"]["name"]
    its.insert(2, 42)
    its.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    seeds["errors-kubectl"] = json.dumps(doc("List", its), indent=4, sort_keys=True)
    seeds["errors-compact"] = json.dumps(doc("List", its), separators=(",", ":"))
    for name, text in seeds.items():
        assert len(text) < 16384, (name, len(text))
        with open(os.path.join(outdir, f"gen-{name}.json"), "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
