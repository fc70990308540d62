#!/usr/bin/python3
"""Offline sanity checks for the manifests in deploy/.

Parses every *.yaml here (or the files named on the command line) with
python3-yaml and checks what a YAML parser alone does not: each object has
apiVersion/kind/metadata.name; selectors match the pod template labels; every
volumeMount names a defined volume; every ConfigMap a pod uses is defined in
the same file; every probe's port is a declared containerPort; each regd
container is non-root, has a read-only root fs and resource limits, and mounts
the directories its flags name.

A regd container that listens on a TCP address other hosts can reach (a
gateway) must also:
  - serve mTLS: --tls_cert and --tls_key naming tls.crt and tls.key of a
    Secret volume mounted as a directory (no subPath, so that renewals reach
    the pod), that Secret being the secretName of a cert-manager Certificate
    in the same file; and --tls_client_ca naming that Secret's ca.crt, or a
    CA bundle on another Secret or ConfigMap volume, also without subPath;
  - not have --allow_insecure_listen, nor a `grpc:` probe (the kubelet's gRPC
    probe cannot present a client certificate);
  - have --policy naming a key of a ConfigMap in the same file whose JSON has
    the tenant policy's shape (docs/CONFIG.md): each tenant a unique name,
    exactly one identity (client_cert_cn, client_cert_uri_san or token_sha256),
    allow rules {"prefix", "actions"} with a registry-led prefix and actions
    from pull/push, and docker_config files on mounted Secret volumes;
  - be selected by a NetworkPolicy that limits ingress to its gRPC port from
    named sources, and limits egress (allowing DNS).

Not a schema validation (no cluster or kubeconform here). Exit 1 on failure.
"""

import glob
import json
import os
import re
import sys

import yaml

errors = []


def err(where, msg):
    errors.append("%s: %s" % (where, msg))


def containers_of(pod):
    return pod.get("initContainers", []) + pod.get("containers", [])


def is_under(path, mount):
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def parse_flags(c):
    """{flag: value} from a container's command and args; None for a bare
    flag. Takes "--flag=value" and "--flag value"."""
    words = [str(w) for w in c.get("command", []) + c.get("args", [])]
    flags = {}
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if not w.startswith("-"):
            continue
        name = "--" + w.lstrip("-")
        if "=" in name:
            name, value = name.split("=", 1)
        elif i < len(words) and not words[i].startswith("-"):
            value = words[i]
            i += 1
        else:
            value = None
        flags[name] = value
    return flags


def is_reachable_listen(listen):
    """True when --listen is a TCP address other hosts can reach (what regd
    refuses to serve plain gRPC on)."""
    if listen.startswith("unix:"):
        return False
    host = listen.rsplit(":", 1)[0].strip("[]")
    return not (host in ("localhost", "::1") or host.startswith("127."))


def mount_for(path, c):
    """The volumeMount holding `path` (the deepest one), or None."""
    best = None
    for m in c.get("volumeMounts", []):
        if is_under(path, m["mountPath"]):
            if best is None or len(m["mountPath"]) > len(best["mountPath"]):
                best = m
    return best


def key_for(path, mount, source):
    """The Secret/ConfigMap key that `path` inside `mount` shows, or None."""
    rel = os.path.relpath(path, mount["mountPath"])
    if mount.get("subPath"):
        rel = (mount["subPath"] if rel == "."
               else os.path.join(mount["subPath"], rel))
    items = source.get("items")
    if items is None:
        return rel
    for item in items:
        if item.get("path") == rel:
            return item.get("key")
    return None


def check_regd(where, c, pod):
    mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
    flags = parse_flags(c)
    for flag, value in flags.items():
        if value is None:
            continue
        paths = []
        if flag in ("--config", "--ready_file", "--policy", "--tls_cert",
                    "--tls_key", "--tls_client_ca"):
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
    if not c.get("command") and not c.get("args"):
        err(where, "regd without args runs the image's CMD "
            "(plain gRPC on 0.0.0.0 with --allow_insecure_listen)")


# --- the tenant policy (--policy; docs/CONFIG.md) ---------------------------

IDENTITY_KEYS = ("client_cert_cn", "client_cert_uri_san", "token_sha256")
TENANT_KEYS = set(IDENTITY_KEYS) | {"name", "allow", "docker_config",
                                    "max_concurrent_calls"}
ACTIONS = ("pull", "push")


def no_duplicate_keys(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError("duplicate key %r" % k)
        obj[k] = v
    return obj


def is_str(v):
    return isinstance(v, str) and v != ""


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_prefix(where, prefix):
    if not is_str(prefix):
        err(where, "prefix must be a non-empty string")
        return
    if "://" in prefix or re.search(r"[\s@*?{}]", prefix):
        err(where, "prefix %r must be registry[:port][/path], with no scheme, "
            "whitespace, digest or glob characters" % prefix)
        return
    host, _, path = prefix.partition("/")
    # The docker grammar: a first component is a registry only if it has a
    # dot or a port, or is localhost.
    if not host or not ("." in host or ":" in host or host == "localhost"):
        err(where, "prefix %r does not start with a registry host" % prefix)
    segments = path[:-1].split("/") if path.endswith("/") else path.split("/")
    if path and any(seg in ("", ".", "..") for seg in segments):
        err(where, "prefix %r has an empty, . or .. path segment" % prefix)
    if path != path.lower():
        err(where, "prefix %r: repository paths are lower-case" % prefix)


def check_policy(where, text, docker_config_problem):
    """Checks the --policy JSON. docker_config_problem(path) is None when
    a docker_config file is where the container can read it, else why not."""
    try:
        policy = json.loads(text, object_pairs_hook=no_duplicate_keys)
    except ValueError as e:
        err(where, "not JSON: %s" % e)
        return
    if not isinstance(policy, dict) or set(policy) != {"tenants"}:
        err(where, 'must be an object with exactly the key "tenants"')
        return
    tenants = policy["tenants"]
    if not isinstance(tenants, list) or not tenants:
        err(where, '"tenants" must be a non-empty list')
        return
    names = set()
    identities = set()
    for i, t in enumerate(tenants):
        tw = "%s tenants[%d]" % (where, i)
        if not isinstance(t, dict):
            err(tw, "must be an object")
            continue
        if is_str(t.get("name")):
            tw = "%s tenant %r" % (where, t["name"])
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", t["name"]):
                err(tw, "a name is 1-64 of A-Z a-z 0-9 . _ -")
            if t["name"] in names:
                err(tw, "duplicate name")
            names.add(t["name"])
        else:
            err(tw, '"name" must be a non-empty string')
        for k in sorted(set(t) - TENANT_KEYS):
            err(tw, "unknown key %r" % k)
        ids = [k for k in IDENTITY_KEYS if k in t]
        if len(ids) != 1:
            err(tw, "needs exactly one of %s, has %s"
                % ("/".join(IDENTITY_KEYS), ids or "none"))
        for k in ids:
            v = t[k]
            if not is_str(v):
                err(tw, "%s must be a non-empty string" % k)
                continue
            if k == "token_sha256" and not re.fullmatch(r"[0-9a-fA-F]{64}", v):
                err(tw, "token_sha256 must be 64 hex digits "
                    "(sha256sum of the token)")
            if (k == "client_cert_uri_san"
                    and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", v)):
                err(tw, "client_cert_uri_san %r is not a URI" % v)
            if (k, v.lower() if k == "token_sha256" else v) in identities:
                err(tw, "%s %r is already another tenant's" % (k, v))
            identities.add((k, v.lower() if k == "token_sha256" else v))
        allow = t.get("allow")
        if not isinstance(allow, list) or not allow:
            err(tw, '"allow" must be a non-empty list of rules')
            allow = []
        for j, rule in enumerate(allow):
            rw = "%s allow[%d]" % (tw, j)
            if (not isinstance(rule, dict)
                    or set(rule) != {"prefix", "actions"}):
                err(rw, 'must be an object with exactly "prefix" and '
                    '"actions"')
                continue
            check_prefix(rw, rule["prefix"])
            actions = rule["actions"]
            if (not isinstance(actions, list) or not actions
                    or any(a not in ACTIONS for a in actions)
                    or len(set(actions)) != len(actions)):
                err(rw, '"actions" must be a non-empty list of distinct '
                    '"pull"/"push", not %r' % (actions,))
        if "docker_config" in t:
            dc = t["docker_config"]
            if not is_str(dc) or not dc.startswith("/"):
                err(tw, "docker_config must be an absolute path")
            elif docker_config_problem(dc):
                err(tw, "docker_config %s %s"
                    % (dc, docker_config_problem(dc)))
        if "max_concurrent_calls" in t:
            m = t["max_concurrent_calls"]
            if not is_int(m) or not 1 <= m <= 100000:
                err(tw, "max_concurrent_calls must be an integer, 1 to 100000")


# --- the gateway: mTLS, policy, NetworkPolicy -------------------------------

TLS_FLAGS = (("--tls_cert", "tls.crt"), ("--tls_key", "tls.key"),
             ("--tls_client_ca", "ca.crt"))


def namespace_of(d):
    return d.get("metadata", {}).get("namespace")


def docker_config_mount(path, c, volumes):
    """None when a tenant's docker_config file is on a Secret volume the
    container mounts, else what is wrong."""
    m = mount_for(path, c)
    if m is None:
        return "is not on a mounted volume"
    if "secret" not in volumes.get(m["name"], {}):
        return ("is not on a Secret volume (registry credentials belong in "
                "a Secret)")
    return None


def check_gateway(where, c, pod, labels, namespace, docs):
    flags = parse_flags(c)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    fname = where.split(" ", 1)[0]
    if "--allow_insecure_listen" in flags:
        err(where, "a gateway must not have --allow_insecure_listen: "
            "serve mTLS (--tls_cert/--tls_key/--tls_client_ca)")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if "grpc" in c.get(probe, {}):
            err(where, "%s is a grpc: probe, which cannot present a client "
                "certificate to an mTLS listener; use tcpSocket or exec"
                % probe)

    # TLS from a cert-manager Certificate's Secret, mounted as a directory.
    certificates = {
        d.get("spec", {}).get("secretName")
        for d in docs
        if d.get("kind") == "Certificate"
        and str(d.get("apiVersion", "")).startswith("cert-manager.io/")
        and namespace_of(d) == namespace
    }
    tls_volumes = set()
    for flag, want_key in TLS_FLAGS:
        path = flags.get(flag)
        if not path:
            err(where, "a gateway needs %s (mTLS)" % flag)
            continue
        m = mount_for(path, c)
        if m is None:
            continue  # reported by check_regd
        volume = volumes.get(m["name"], {})
        secret = volume.get("secret")
        own_ca_bundle = flag == "--tls_client_ca" and (
            "configMap" in volume
            or (secret is not None
                and secret.get("secretName") not in certificates))
        if own_ca_bundle:  # client certificates from another CA
            tls_volumes.add(m["name"])
            continue
        if secret is None:
            err(where, "%s=%s is not on a Secret volume" % (flag, path))
            continue
        tls_volumes.add(m["name"])
        key = key_for(path, m, secret)
        if key != want_key:
            err(where, "%s=%s shows Secret key %r, not %r"
                % (flag, path, key, want_key))
        if secret.get("secretName") not in certificates:
            err(where, "%s: Secret %r is not the secretName of a cert-manager "
                "Certificate in this file" % (flag, secret.get("secretName")))
    for m in c.get("volumeMounts", []):
        if m["name"] in tls_volumes and (m.get("subPath")
                                         or m.get("subPathExpr")):
            err(where, "TLS volume %s is mounted with subPath at %s: the "
                "kubelet never updates such a mount, so a renewed certificate "
                "would not reach regd; mount the Secret as a directory"
                % (m["name"], m["mountPath"]))

    # The tenant policy, from a ConfigMap in this file.
    path = flags.get("--policy")
    if not path:
        err(where, "a gateway needs --policy (tenants)")
    else:
        m = mount_for(path, c)
        cm_ref = volumes.get(m["name"], {}).get("configMap") if m else None
        if m is not None and cm_ref is None:
            err(where, "--policy=%s is not on a ConfigMap volume" % path)
        elif cm_ref is not None:
            cms = [d for d in docs if d.get("kind") == "ConfigMap"
                   and d["metadata"]["name"] == cm_ref["name"]
                   and namespace_of(d) == namespace]
            key = key_for(path, m, cm_ref)
            data = cms[0].get("data", {}) if cms else {}
            if not cms:
                err(where, "--policy: ConfigMap %s is not defined here"
                    % cm_ref["name"])
            elif key not in data:
                err(where, "--policy=%s: ConfigMap %s has no key %r"
                    % (path, cm_ref["name"], key))
            else:
                check_policy(
                    "%s ConfigMap/%s %s" % (fname, cm_ref["name"], key),
                    data[key], lambda p: docker_config_mount(p, c, volumes))

    # A NetworkPolicy selecting these pods.
    ports = {p.get("containerPort") for p in c.get("ports", [])}
    ports |= {p.get("name") for p in c.get("ports", [])}
    ports.discard(None)
    netpols = [d for d in docs if d.get("kind") == "NetworkPolicy"
               and namespace_of(d) == namespace
               and matches(d.get("spec", {}).get("podSelector", {})
                           .get("matchLabels", {}), labels)]
    if not netpols:
        err(where, "no NetworkPolicy in this file selects the gateway pods")
    kinds = set()
    dns = False
    for np in netpols:
        nw = "%s NetworkPolicy/%s" % (fname, np["metadata"]["name"])
        spec = np.get("spec", {})
        # Without policyTypes, Ingress always applies and Egress applies when
        # there are egress rules.
        types = spec.get("policyTypes") or (
            ["Ingress"] + (["Egress"] if spec.get("egress") else []))
        kinds.update(types)
        for i, rule in enumerate(spec.get("ingress", [])):
            if not rule.get("from"):
                err(nw, "ingress[%d] has no `from`: it admits every source"
                    % i)
            rule_ports = rule.get("ports", [])
            if not rule_ports:
                err(nw, "ingress[%d] has no `ports`: it admits every port" % i)
            for p in rule_ports:
                if p.get("port") not in ports:
                    err(nw, "ingress[%d] opens port %r, not the gRPC port"
                        % (i, p.get("port")))
        if "Egress" in types and any(
                p.get("port") in (53, "53", "dns", "dns-tcp")
                for rule in spec.get("egress", [])
                for p in rule.get("ports", [])):
            dns = True
    if netpols and not {"Ingress", "Egress"} <= kinds:
        err(where, "the NetworkPolicies selecting the gateway pods must "
            "restrict both Ingress and Egress")
    if "Egress" in kinds and not dns:
        err(where, "the NetworkPolicies allow no egress to DNS (port 53): "
            "regd could not resolve registries")


def check_pod(where, pod, labels, configmaps, namespace, docs):
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
            listen = parse_flags(c).get("--listen") or "127.0.0.1:50051"
            if is_reachable_listen(listen):
                check_gateway(cw, c, pod, labels, namespace, docs)
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
            check_pod(where, tmpl["spec"], labels, configmaps,
                      namespace_of(d), docs)
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
        elif d["kind"] in ("PodDisruptionBudget", "NetworkPolicy"):
            key = "podSelector" if d["kind"] == "NetworkPolicy" else "selector"
            sel = d["spec"].get(key, {}).get("matchLabels", {})
        if sel is not None and not any(matches(sel, l) for l in pod_labels):
            err(where, "selector matches no pod template in this file")
        if d["kind"] == "Certificate":
            spec = d.get("spec", {})
            if not spec.get("secretName"):
                err(where, "Certificate has no secretName")
            if not spec.get("issuerRef", {}).get("name"):
                err(where, "Certificate has no issuerRef.name")
    return len(docs)


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    files = argv[1:] or sorted(glob.glob(os.path.join(here, "*.yaml")))
    for f in files:
        n = check_file(f)
        print("%s: %d objects" % (os.path.basename(f), n))
    for e in errors:
        print("error: " + e, file=sys.stderr)
    return 1 if errors or not files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
