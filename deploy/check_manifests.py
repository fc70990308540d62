#!/usr/bin/python3
"""Offline sanity checks for the manifests in deploy/.

Parses every *.yaml here (python3-yaml) and checks what a YAML parser alone
does not: each object has apiVersion/kind/metadata.name; selectors match the
pod template labels; every volumeMount names a defined volume; every ConfigMap
a pod uses is defined in the same file; every probe's port is a declared
containerPort; each regd container is non-root, has a read-only root fs and
resource limits, and mounts the directories its flags name.

Not a schema validation (no cluster or kubeconform here). Exit 1 on failure.
"""

import glob
import json
import os
import sys

import yaml

errors = []


def err(where, msg):
    errors.append("%s: %s" % (where, msg))


def containers_of(pod):
    return pod.get("initContainers", []) + pod.get("containers", [])


def is_under(path, mount):
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def check_regd(where, c, pod):
    mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
    for arg in c.get("args", []):
        if "=" not in arg:
            continue
        flag, value = arg.split("=", 1)
        paths = []
        if flag in ("--config", "--ready_file"):
            paths = [value]
        elif flag == "--listen" and value.startswith("unix:"):
            paths = [value[len("unix:"):]]
        elif flag == "--allowed_paths":
            paths = [p for p in value.split(",") if p]
        for p in paths:
            if not any(is_under(p, m) for m in mounts):
                err(where, "%s=%s is not on a mounted volume" % (flag, p))
    sc = c.get("securityContext", {})
    psc = pod.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        err(where, "regd must run as non-root")
    if not sc.get("readOnlyRootFilesystem"):
        err(where, "regd must have a read-only root filesystem")
    limits = c.get("resources", {}).get("limits", {})
    if "memory" not in limits:
        err(where, "regd needs a memory limit")


def check_pod(where, pod, labels, configmaps):
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in containers_of(pod):
        cw = "%s container %s" % (where, c["name"])
        ports = {p.get("containerPort") for p in c.get("ports", [])}
        ports |= {p.get("name") for p in c.get("ports", [])}
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes:
                err(cw, "mounts undefined volume %r" % m["name"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = c.get(probe)
            if not spec:
                continue
            for kind in ("grpc", "httpGet", "tcpSocket"):
                if kind in spec and spec[kind].get("port") not in ports:
                    err(cw, "%s %s port %r is not a containerPort"
                        % (probe, kind, spec[kind].get("port")))
        if "regd" in c.get("image", "").rsplit("/", 1)[-1].split(":")[0]:
            check_regd(cw, c, pod)
    for name, v in volumes.items():
        cm = v.get("configMap")
        if cm and cm["name"] not in configmaps and not cm.get("optional"):
            err(where, "volume %s uses ConfigMap %s, not defined here"
                % (name, cm["name"]))
    if not labels:
        err(where, "pod template has no labels")


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_file(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    if not docs:
        err(path, "no documents")
    configmaps = {d["metadata"]["name"] for d in docs
                  if d.get("kind") == "ConfigMap"}
    pod_labels = []
    for d in docs:
        where = "%s %s/%s" % (os.path.basename(path), d.get("kind"),
                              d.get("metadata", {}).get("name"))
        for key in ("apiVersion", "kind", "metadata"):
            if key not in d:
                err(where, "missing %s" % key)
        if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet"):
            tmpl = d["spec"]["template"]
            labels = tmpl.get("metadata", {}).get("labels", {})
            if not matches(d["spec"]["selector"]["matchLabels"], labels):
                err(where, "selector does not match the template labels")
            pod_labels.append(labels)
            check_pod(where, tmpl["spec"], labels, configmaps)
        if d.get("kind") == "ConfigMap":
            for key, text in d.get("data", {}).items():
                if key.endswith(".json"):
                    try:
                        json.loads(text)
                    except ValueError as e:
                        err(where, "%s is not JSON: %s" % (key, e))
    for d in docs:
        where = "%s %s/%s" % (os.path.basename(path), d["kind"],
                              d["metadata"]["name"])
        sel = None
        if d["kind"] == "Service":
            sel = d["spec"].get("selector", {})
        elif d["kind"] == "PodDisruptionBudget":
            sel = d["spec"]["selector"]["matchLabels"]
        if sel is not None and not any(matches(sel, l) for l in pod_labels):
            err(where, "selector matches no pod template in this file")
    return len(docs)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    files = sorted(glob.glob(os.path.join(here, "*.yaml")))
    for f in files:
        n = check_file(f)
        print("%s: %d objects" % (os.path.basename(f), n))
    for e in errors:
        print("error: " + e, file=sys.stderr)
    return 1 if errors or not files else 0


if __name__ == "__main__":
    sys.exit(main())
