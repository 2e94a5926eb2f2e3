#!/usr/bin/env python3
"""A stand-in for the `helm` client, for llmd's kube-backend tests.

It answers the commands llmd runs (`upgrade --install`, `uninstall`, `version`) the way
helm 3 does, against the cluster of the kubeconfig it is given — llmd's fake API server
in tests — so llmd's own code reads the results back as it would from real helm:

* each revision of a release is a Secret `sh.helm.release.v1.<name>.v<N>` (labels
  owner=helm, name, status, version and the release's `--labels`), whose `release` key
  is base64 of the gzipped release JSON (chart metadata, user values as `config`,
  revision, status); earlier revisions are relabelled `superseded`;
* installing renders a few objects per chart (annotated `meta.helm.sh/release-name`
  like helm's): llm-d-modelservice → decode/prefill Deployments; llm-d-router-* → the
  EPP Deployment and Service and the InferencePool; llm-d-infra → the Gateway with a
  gateway Deployment and Service (as istio would make them); istiod/agentgateway → a
  controller Deployment. Objects of the previous revision it no longer has are deleted;
* `uninstall` deletes the release's objects and storage Secrets; `rollback` drops the
  latest revision.

Every invocation is appended to $HELM_STANDIN_LOG as one JSON line: the argv and the
text of each values file. $HELM_STANDIN_FAIL=<release> makes installing that release
fail as helm does (exit 1, "Error: UPGRADE FAILED: …"); $HELM_STANDIN_HANG=<release>
records its new revision as pending and hangs (what a helm killed half way leaves), and
an install over a pending revision fails as helm's does.

Not covered: real charts (templates, hooks, CRDs), `--wait`, rollbacks, locking
against concurrent operations on one release.
"""

import base64
import gzip
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml


def fail(msg, code=1):
    sys.stderr.write(f"Error: {msg}\n")
    sys.exit(code)


def parse(argv):
    """Splits helm's argv into positional words and flags (repeatable ones as lists)."""
    words, flags = [], {"-f": []}
    takes_value = {"--repo", "--version", "--namespace", "-n", "-f", "--values", "--labels", "--kubeconfig", "--kube-context", "-o", "--output"}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in takes_value:
            key = {"-n": "--namespace", "--values": "-f", "--output": "-o"}.get(a, a)
            if key == "-f":
                flags["-f"].append(argv[i + 1])
            else:
                flags[key] = argv[i + 1]
            i += 2
        elif a.startswith("--"):
            flags[a] = True
            i += 1
        else:
            words.append(a)
            i += 1
    return words, flags


class Kube:
    """Just enough of a Kubernetes client: GET, list, server-side apply, DELETE."""

    def __init__(self, kubeconfig, context):
        with open(kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")) as f:
            cfg = yaml.safe_load(f)
        ctx_name = context or cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        self.server = cluster["server"].rstrip("/")

    def call(self, method, path, body=None, ctype="application/json", query=None):
        url = self.server + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": ctype, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            fail(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}")

    @staticmethod
    def path(api_version, plural, namespace, name=None):
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        p = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
        return p + (f"/{name}" if name else "")

    def apply(self, obj, plural):
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], plural, meta.get("namespace"), meta["name"])
        return self.call("PATCH", path, obj, "application/apply-patch+yaml", {"fieldManager": "helm", "force": "true"})

    def delete(self, api_version, plural, namespace, name):
        self.call("DELETE", self.path(api_version, plural, namespace, name), {"propagationPolicy": "Background"})

    def secrets(self, namespace, release):
        got = self.call("GET", self.path("v1", "secrets", namespace), query={"labelSelector": f"owner=helm,name={release}"})
        return sorted((got or {}).get("items", []), key=lambda s: int(s["metadata"]["labels"].get("version", "0")))


def merge(into, new):
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v
    return into


PLURALS = {"Deployment": "deployments", "Service": "services", "Gateway": "gateways", "InferencePool": "inferencepools"}


def deployment(name, ns, labels, replicas=1, port=8000):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "main", "image": "ghcr.io/llm-d/standin:latest", "ports": [{"name": "http", "containerPort": port}]}]},
            },
        },
    }


def service(name, ns, selector, port, target, labels=None):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"selector": dict(selector), "ports": [{"name": "http", "port": port, "targetPort": target}]},
    }


def chart_objects(chart, release, ns, values):
    """The objects a chart of this name makes, in a form the fake API server accepts."""
    name = chart.rstrip("/").split("/")[-1]
    if name == "llm-d-modelservice":
        prefix = values.get("fullnameOverride") or release
        out = []
        for role, default in (("decode", 1), ("prefill", 0)):
            replicas = int((values.get(role) or {}).get("replicas", default) or 0)
            if replicas > 0:
                labels = {"llm-d.ai/inferenceServing": "true", "llm-d.ai/model": prefix, "llm-d.ai/role": role}
                out.append(deployment(f"{prefix}-{role}", ns, labels, replicas))
        return out
    if name.startswith("llm-d-router"):
        pool_values = values.get("inferencePool") or {}
        pool = pool_values.get("name") or f"{release}-pool"
        prefix = pool[: -len("-inference-pool")] if pool.endswith("-inference-pool") else release
        epp = f"{prefix}-epp"
        labels = {"app": epp}
        standalone = name.endswith("standalone")
        port = 80 if standalone else 9002
        return [
            deployment(epp, ns, labels, 1, port),
            service(epp, ns, labels, port, port),
            {
                "apiVersion": "inference.networking.k8s.io/v1",
                "kind": "InferencePool",
                "metadata": {"name": pool, "namespace": ns},
                "spec": {
                    "selector": {"matchLabels": (pool_values.get("modelServers") or {}).get("matchLabels") or {}},
                    "targetPorts": (pool_values.get("modelServers") or {}).get("targetPorts") or [{"number": 8000}],
                    "endpointPickerRef": {"name": epp, "port": {"number": 9002}},
                },
            },
        ]
    if name == "llm-d-infra":
        gw = f"{release}-inference-gateway"
        gateway = values.get("gateway") or {}
        labels = {"gateway.networking.k8s.io/gateway-name": gw}
        return [
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": gw, "namespace": ns},
                "spec": {"gatewayClassName": gateway.get("gatewayClassName", "istio"), "listeners": [{"name": "default", "port": 80, "protocol": "HTTP"}]},
            },
            deployment(f"{gw}-istio", ns, labels, 1, 8080),
            service(f"{gw}-istio", ns, labels, 80, 8080, labels),
        ]
    if name in ("istiod", "agentgateway"):
        return [deployment(name, ns, {"app": name}, 1, 15010)]
    return []


def release_of(secret):
    return json.loads(gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"]))))


def write_release(kube, release, ns, revision, version, chart, values, refs, status, flags, previous):
    """Stores one revision as helm does: a Secret holding the gzipped release JSON."""
    body = {
        "name": release,
        "namespace": ns,
        "version": revision,
        "info": {"status": status, "description": "Upgrade complete" if previous else "Install complete"},
        "chart": {"metadata": {"name": chart.rstrip("/").split("/")[-1], "version": version}},
        "config": values,
        "manifest": refs,
    }
    packed = base64.b64encode(base64.b64encode(gzip.compress(json.dumps(body).encode()))).decode()
    system = {"owner", "name", "status", "version", "createdAt", "modifiedAt"}
    # helm merges an upgrade's --labels into the release's earlier ones.
    labels = {k: v for k, v in (previous[-1]["metadata"]["labels"].items() if previous else []) if k not in system}
    labels.update({"owner": "helm", "name": release, "status": status, "version": str(revision)})
    for kv in filter(None, flags.get("--labels", "").split(",")):
        k, v = kv.split("=", 1)
        labels[k] = v
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {"name": f"sh.helm.release.v1.{release}.v{revision}", "namespace": ns, "labels": labels},
        "data": {"release": packed},
    }
    kube.apply(secret, "secrets")


def upgrade(kube, words, flags):
    release, chart = words[1], words[2]
    ns = flags.get("--namespace", "default")
    if os.environ.get("HELM_STANDIN_FAIL") == release:
        fail(f'UPGRADE FAILED: release {release} failed: context deadline exceeded (stand-in failure)')
    previous = kube.secrets(ns, release)
    if previous and previous[-1]["metadata"]["labels"].get("status", "").startswith("pending-"):
        status = previous[-1]["metadata"]["labels"]["status"]
        fail(f"UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress (release is {status})")
    if kube.call("GET", f"/api/v1/namespaces/{ns}") is None:
        if not flags.get("--create-namespace"):
            fail(f'create: failed to create: namespaces "{ns}" not found')
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, "namespaces")
    values = {}
    for path in flags["-f"]:
        with open(path) as f:
            merge(values, yaml.safe_load(f) or {})
    old_objects = release_of(previous[-1])["manifest"] if previous else []
    objects = chart_objects(chart, release, ns, values)
    refs = [{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"]} for o in objects]
    revision = int(previous[-1]["metadata"]["labels"]["version"]) + 1 if previous else 1
    version = flags.get("--version", "0.0.0").lstrip("v")
    if os.environ.get("HELM_STANDIN_HANG") == release:
        # What an interrupted helm leaves: the new revision recorded as pending.
        pending = "pending-upgrade" if previous else "pending-install"
        write_release(kube, release, ns, revision, version, chart, values, refs, pending, flags, previous)
        time.sleep(30)
        fail("timed out (stand-in hang)")
    for o in objects:
        o["metadata"].setdefault("labels", {})["app.kubernetes.io/managed-by"] = "Helm"
        o["metadata"]["annotations"] = {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns}
        kube.apply(o, PLURALS[o["kind"]])
    for old in old_objects:
        if old not in refs:
            kube.delete(old["apiVersion"], PLURALS[old["kind"]], ns, old["name"])
    write_release(kube, release, ns, revision, version, chart, values, refs, "deployed", flags, previous)
    for p in previous:
        p["metadata"]["labels"]["status"] = "superseded"
        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": p["metadata"]["name"], "namespace": ns, "labels": p["metadata"]["labels"]}}, "secrets")
    print(f'Release "{release}" has been {"upgraded" if previous else "installed"}. Happy Helming!')


def uninstall(kube, words, flags):
    release = words[1]
    ns = flags.get("--namespace", "default")
    secrets = kube.secrets(ns, release)
    if not secrets:
        fail(f"uninstall: Release not loaded: {release}: release: not found")
    for o in release_of(secrets[-1])["manifest"]:
        kube.delete(o["apiVersion"], PLURALS[o["kind"]], ns, o["name"])
    for s in secrets:
        kube.delete("v1", "secrets", ns, s["metadata"]["name"])
    print(f'release "{release}" uninstalled')


def rollback(kube, words, flags):
    """Back to the last deployed or superseded revision (helm would write a new one)."""
    release = words[1]
    ns = flags.get("--namespace", "default")
    secrets = kube.secrets(ns, release)
    if len(secrets) < 2:
        fail(f"release: not found or no revision to roll back to: {release}")
    kube.delete("v1", "secrets", ns, secrets[-1]["metadata"]["name"])
    back = secrets[-2]
    back["metadata"]["labels"]["status"] = "deployed"
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": back["metadata"]["name"], "namespace": ns, "labels": back["metadata"]["labels"]}}, "secrets")
    print("Rollback was a success! Happy Helming!")


def main():
    argv = sys.argv[1:]
    words, flags = parse(argv)
    values = {}
    for path in flags["-f"]:
        with open(path) as f:
            values[path] = f.read()
    log = os.environ.get("HELM_STANDIN_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"argv": argv, "values": values}) + "\n")
    if not words:
        fail("no command")
    if words[0] == "version":
        print("v3.17.0+standin")
        return
    kube = Kube(flags.get("--kubeconfig"), flags.get("--kube-context"))
    if words[:1] == ["upgrade"] and flags.get("--install") and len(words) >= 3:
        upgrade(kube, words, flags)
    elif words[0] == "uninstall" and len(words) >= 2:
        uninstall(kube, words, flags)
    elif words[0] == "rollback" and len(words) >= 2:
        rollback(kube, words, flags)
    else:
        fail(f"the stand-in does not know 'helm {' '.join(argv)}'")


if __name__ == "__main__":
    main()
