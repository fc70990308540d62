#!/usr/bin/python3
"""Offline sanity checks for the manifests in deploy/.

Parses every *.yaml here (or the files named on the command line) with
python3-yaml and checks what a YAML parser alone does not: each object has
apiVersion/kind/metadata.name; selectors match the pod template labels; every
volumeMount names a defined volume; every ConfigMap a pod uses is defined in
the same file; every probe's port is a declared containerPort; each regd
container is non-root, has a read-only root fs and resource limits, and mounts
the directories its flags name. Operating invariants for each regd
container: metrics on (--metrics_listen on a fixed, non-loopback port, a
containerPort named "metrics", prometheus.io/* pod annotations);
terminationGracePeriodSeconds >= preStop sleep + --drain_delay +
--shutdown_grace + 15 s (regd's watchdog); --max_concurrent_calls set and
the memory limit >= 30 MiB + --grpc_memory + --inline_memory + --cache_bytes
+ 0.3 MiB a call; readiness runs `regdctl health` at regd's own address (over mTLS with
a certificate whose usages allow client auth), liveness never does.

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
    named sources and its metrics port from namespaces named by a
    namespaceSelector (never both ports in one rule), and limits egress
    (allowing DNS).

deploy/*.json is the Grafana dashboard: valid JSON; each PromQL expression
names only metrics regd exports (REGD_METRICS, compared with
server/metrics.cc when the sources are there) and labels they have, calls
only PromQL functions; every exported metric has a panel.

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

    # A NetworkPolicy selecting these pods: the gRPC port from the clients,
    # the metrics port (when regd serves one) from a monitoring namespace.
    grpc_port = listen_port(flags.get("--listen") or "127.0.0.1:50051")
    metrics_port = (listen_port(flags["--metrics_listen"])
                    if flags.get("--metrics_listen") else None)
    named = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
    admitted = set()
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
            opened = set()
            for p in rule_ports:
                port = p.get("port")
                port = named.get(port, port) if isinstance(port, str) else port
                try:
                    port = int(port)
                except (TypeError, ValueError):
                    pass
                if port not in (grpc_port, metrics_port):
                    err(nw, "ingress[%d] opens port %r, neither the gRPC port "
                        "nor the metrics port" % (i, p.get("port")))
                opened.add(port)
            admitted |= opened
            if metrics_port is None or metrics_port not in opened:
                continue
            if grpc_port in opened:
                err(nw, "ingress[%d] opens the gRPC and the metrics port to "
                    "the same sources: clients need no metrics, Prometheus "
                    "no gRPC" % i)
            for src in rule.get("from", []):
                if "ipBlock" in src or not src.get("namespaceSelector"):
                    err(nw, "ingress[%d] admits scrapes from %r: name the "
                        "monitoring namespace with a namespaceSelector (the "
                        "metrics port is plain HTTP)" % (i, src))
        if "Egress" in types and any(
                p.get("port") in (53, "53", "dns", "dns-tcp")
                for rule in spec.get("egress", [])
                for p in rule.get("ports", [])):
            dns = True
    if netpols and grpc_port not in admitted:
        err(where, "no NetworkPolicy ingress rule admits clients to the gRPC "
            "port %s" % grpc_port)
    if netpols and metrics_port is not None and metrics_port not in admitted:
        err(where, "no NetworkPolicy ingress rule admits Prometheus to the "
            "metrics port %s" % metrics_port)
    if netpols and not {"Ingress", "Egress"} <= kinds:
        err(where, "the NetworkPolicies selecting the gateway pods must "
            "restrict both Ingress and Egress")
    if "Egress" in kinds and not dns:
        err(where, "the NetworkPolicies allow no egress to DNS (port 53): "
            "regd could not resolve registries")


# --- operating: metrics, drain, memory, probes ------------------------------

# regd's defaults, for flags a manifest leaves out (server/main.cc).
DEFAULT_DRAIN = "5s"
DEFAULT_GRACE = "30s"
DEFAULT_GRPC_MEMORY = 64 << 20
DEFAULT_INLINE_MEMORY = 64 << 20
DEFAULT_CACHE_BYTES = 64 << 20
# regd's watchdog ends a shutdown this long after drain + grace at the latest.
SHUTDOWN_SLACK = 15
# The memory model (deploy/README.md, "Memory"): a base, plus what gRPC may
# hold (--grpc_memory), plus inline data and streamed uploads
# (--inline_memory), plus the metadata cache (--cache_bytes), plus a little a
# call (a thread, curl's buffers).
BASE_MIB = 30
PER_CALL_MIB = 0.3
MiB = 1 << 20


def listen_port(addr):
    """The port of a host:port address, or None (unix:, no port)."""
    if not addr or addr.startswith("unix:") or ":" not in addr:
        return None
    try:
        return int(addr.rsplit(":", 1)[1])
    except ValueError:
        return None


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60,
                   "h": 3600}


def parse_duration(text):
    """Seconds of an Abseil duration ("5s", "1m30s", "500ms", "0"), or None
    for a bare number (regd refuses it: "use a unit") or anything else."""
    text = str(text)
    if text == "0":
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


_QUANTITY_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
                   "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
                   "": 1}


def parse_quantity(text):
    """Bytes of a Kubernetes memory quantity ("256Mi", "1G", "268435456")."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|)", str(text))
    if not m:
        return None
    return float(m.group(1)) * _QUANTITY_UNITS[m.group(2)]


def prestop_seconds(c):
    """How long the container's preStop hook sleeps (0 without one)."""
    pre = c.get("lifecycle", {}).get("preStop")
    if not pre:
        return 0
    if "sleep" in pre:  # the kubelet's own sleep action (1.29+)
        return int(pre["sleep"].get("seconds", 0))
    words = [str(w) for w in pre.get("exec", {}).get("command", [])]
    m = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)\b", " ".join(words))
    return float(m.group(1)) if m else 0


def regdctl_health(probe):
    """The words of a probe that runs `regdctl ... health`, else None."""
    words = [str(w) for w in (probe or {}).get("exec", {}).get("command", [])]
    if words and os.path.basename(words[0]) == "regdctl" and "health" in words:
        return words
    return None


def regdctl_flags(words):
    """{--flag: value} of a regdctl command line ("--flag=v" or "--flag v")."""
    return parse_flags({"args": words[1:]})


def certificate_for_secret(docs, secret, namespace):
    for d in docs:
        if (d.get("kind") == "Certificate"
                and d.get("spec", {}).get("secretName") == secret
                and namespace_of(d) == namespace):
            return d
    return None


def check_operating(where, c, pod, annotations, namespace, docs):
    """Metrics on and scraped, the drain inside the grace period, memory
    inside the limit, readiness that follows the drain."""
    flags = parse_flags(c)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}

    # Metrics: --metrics_listen, a containerPort "metrics", the annotations.
    metrics = flags.get("--metrics_listen")
    port = listen_port(metrics)
    if not metrics:
        err(where, "regd needs --metrics_listen=0.0.0.0:PORT (Prometheus)")
    elif port is None or port == 0:
        err(where, "--metrics_listen=%s needs a fixed port to scrape" % metrics)
    else:
        named = {p.get("name"): p.get("containerPort")
                 for p in c.get("ports", [])}
        if named.get("metrics") != port:
            err(where, "--metrics_listen port %d needs a containerPort named "
                "\"metrics\" (has %r)" % (port, named.get("metrics")))
        host = metrics.rsplit(":", 1)[0].strip("[]")
        if host in ("127.0.0.1", "localhost", "::1"):
            err(where, "--metrics_listen=%s is loopback: Prometheus cannot "
                "reach it" % metrics)
        if str(annotations.get("prometheus.io/scrape")) != "true":
            err(where, "the pod template needs the annotation "
                "prometheus.io/scrape: \"true\"")
        if str(annotations.get("prometheus.io/port")) != str(port):
            err(where, "annotation prometheus.io/port is %r, not the metrics "
                "port %d" % (annotations.get("prometheus.io/port"), port))
        if annotations.get("prometheus.io/path", "/metrics") != "/metrics":
            err(where, "annotation prometheus.io/path must be /metrics")

    # SIGTERM: preStop, then regd's drain and grace, then its watchdog; all
    # before the kubelet's SIGKILL.
    drain = parse_duration(flags.get("--drain_delay") or DEFAULT_DRAIN)
    grace = parse_duration(flags.get("--shutdown_grace") or DEFAULT_GRACE)
    if drain is None:
        err(where, "--drain_delay=%s is not a duration with a unit"
            % flags.get("--drain_delay"))
    if grace is None:
        err(where, "--shutdown_grace=%s is not a duration with a unit"
            % flags.get("--shutdown_grace"))
    if drain is not None and grace is not None:
        pre = prestop_seconds(c)
        need = pre + drain + grace + SHUTDOWN_SLACK
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        if tgps < need:
            err(where, "terminationGracePeriodSeconds %s < preStop %gs + "
                "--drain_delay %gs + --shutdown_grace %gs + regd's %ds "
                "watchdog slack = %gs: the kubelet would SIGKILL regd while "
                "it still finishes calls" % (tgps, pre, drain, grace,
                                             SHUTDOWN_SLACK, need))

    # Memory: the flags bound it; the limit must hold the bound.
    calls = flags.get("--max_concurrent_calls")
    if calls is None:
        err(where, "set --max_concurrent_calls explicitly, to what the "
            "memory limit holds")
    try:
        calls = int(calls if calls is not None else 256)
        grpc_mem = int(flags.get("--grpc_memory") or DEFAULT_GRPC_MEMORY)
        inline_mem = int(flags.get("--inline_memory") or
                         DEFAULT_INLINE_MEMORY)
        cache = flags.get("--cache_bytes")
        cache_mem = int(cache if cache is not None else DEFAULT_CACHE_BYTES)
    except ValueError:
        err(where, "--max_concurrent_calls, --grpc_memory, --inline_memory and "
            "--cache_bytes take plain integers (bytes)")
    else:
        limit = parse_quantity(c.get("resources", {}).get("limits", {})
                               .get("memory", ""))
        need = (BASE_MIB * MiB + grpc_mem + inline_mem + cache_mem +
                PER_CALL_MIB * MiB * calls)
        if limit is None:
            err(where, "cannot read the memory limit %r" % c.get(
                "resources", {}).get("limits", {}).get("memory"))
        elif need > limit:
            err(where, "memory limit %s < %d MiB + --grpc_memory %d MiB + "
                "--inline_memory %d MiB + --cache_bytes %d MiB + %g MiB x "
                "--max_concurrent_calls %d = %.0f MiB"
                % (c["resources"]["limits"]["memory"], BASE_MIB,
                   grpc_mem // MiB, inline_mem // MiB, cache_mem // MiB,
                   PER_CALL_MIB, calls, need / MiB))

    # Probes: readiness asks regd's health (NOT_SERVING while it drains);
    # liveness never does (the drain must not get regd restarted).
    if regdctl_health(c.get("livenessProbe")):
        err(where, "livenessProbe runs `regdctl health`: NOT_SERVING during "
            "the drain would restart regd; use tcpSocket (or none)")
    words = regdctl_health(c.get("readinessProbe"))
    if words is None:
        err(where, "readinessProbe must ask regd's health service "
            "(exec regdctl --addr=... health), so that a draining regd "
            "(NOT_SERVING) leaves the endpoints")
        return
    rf = regdctl_flags(words)
    listen = flags.get("--listen") or "127.0.0.1:50051"
    addr = rf.get("--addr")
    if listen.startswith("unix:"):
        if addr != listen:
            err(where, "readinessProbe --addr=%s is not regd's --listen=%s"
                % (addr, listen))
    else:
        if (addr is None or listen_port(addr) != listen_port(listen)
                or not re.match(r"(127\.|localhost:|\[::1\]:)", addr)):
            err(where, "readinessProbe --addr=%s must be loopback with the "
                "port of --listen=%s" % (addr, listen))
    if not re.fullmatch(r"\d+(\.\d+)?(ms|s)", str(rf.get("--timeout", ""))):
        err(where, "readinessProbe: give regdctl a --timeout below the "
            "probe's timeoutSeconds")
    elif parse_duration(rf["--timeout"]) >= c["readinessProbe"].get(
            "timeoutSeconds", 1):
        err(where, "readinessProbe: regdctl --timeout=%s must be shorter than "
            "timeoutSeconds %s" % (rf["--timeout"],
                                   c["readinessProbe"].get("timeoutSeconds", 1)))
    if flags.get("--tls_cert"):
        for f in ("--tls-ca", "--tls-cert", "--tls-key"):
            if not rf.get(f):
                err(where, "readinessProbe: regd serves TLS; regdctl needs %s"
                    % f)
            elif mount_for(rf[f], c) is None:
                err(where, "readinessProbe: %s=%s is not on a mounted volume"
                    % (f, rf[f]))
        if flags.get("--tls_client_ca") and rf.get("--tls-cert"):
            m = mount_for(rf["--tls-cert"], c)
            secret = volumes.get(m["name"], {}).get("secret") if m else None
            cert = secret and certificate_for_secret(
                docs, secret.get("secretName"), namespace)
            usages = (cert or {}).get("spec", {}).get("usages")
            if usages and "client auth" not in usages:
                err(where, "readinessProbe presents the certificate of %s, "
                    "whose usages lack \"client auth\": regd's mTLS handshake "
                    "refuses it" % cert["metadata"]["name"])


# --- the Grafana dashboard ----------------------------------------------------

# Every metric family regd exports (server/metrics.cc) and its labels. The
# histograms also have _bucket (with le), _sum and _count series.
REGD_METRICS = {
    "grpc_server_started_total": {"grpc_service", "grpc_method", "grpc_type",
                                  "tenant"},
    "grpc_server_handled_total": {"grpc_service", "grpc_method", "grpc_type",
                                  "grpc_code", "tenant"},
    "grpc_server_handling_seconds": {"grpc_service", "grpc_method",
                                     "grpc_type", "tenant"},
    "regd_streams_in_flight": set(),
    "regd_registry_requests_total": {"registry", "operation", "method",
                                     "status_class"},
    "regd_registry_request_duration_seconds": {"registry", "operation"},
    "regd_registry_sent_bytes_total": {"registry"},
    "regd_registry_received_bytes_total": {"registry"},
    "regd_blobs_total": {"outcome"},
    "regd_retries_total": {"reason"},
    "regd_uploads_in_flight": set(),
    "regd_upload_slot_waits_total": set(),
    "regd_upload_slot_wait_seconds": set(),
    "regd_token_fetches_total": {"registry", "result"},
    "regd_registry_ratelimit_remaining": {"registry"},
    "regd_cache_requests_total": {"result"},
    "regd_cache_bytes": set(),
    "regd_build_info": {"version"},
}
HISTOGRAMS = {"grpc_server_handling_seconds",
              "regd_registry_request_duration_seconds",
              "regd_upload_slot_wait_seconds"}
# Labels Prometheus adds to every series (the job, the target, and what the
# usual kubernetes_sd relabelling copies from the pod).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "node"}

PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk",
    "ceil", "changes", "clamp", "clamp_max", "clamp_min", "count",
    "count_over_time", "count_values", "delta", "deriv", "exp", "floor",
    "group", "histogram_quantile", "holt_winters", "idelta", "increase",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log2",
    "log10", "max", "max_over_time", "min", "min_over_time", "quantile",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort",
    "sort_desc", "stddev", "stddev_over_time", "stdvar", "sum",
    "sum_over_time", "time", "timestamp", "topk", "vector",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left",
                   "group_right", "and", "or", "unless", "offset", "bool",
                   "inf", "nan"}


def exported_series():
    """{series name: its labels} for every series regd exports (and `up`)."""
    out = {"up": set()}
    for name, labels in REGD_METRICS.items():
        if name in HISTOGRAMS:
            out[name + "_bucket"] = labels | {"le"}
            out[name + "_sum"] = labels
            out[name + "_count"] = labels
        else:
            out[name] = labels
    return out


def promql_names(expr):
    """(metric names, label names, unknown functions) an expression uses."""
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", expr)            # Grafana variables
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', s)  # strings
    labels = set()
    for grouping in re.findall(r"\b(?:by|without|on|ignoring|group_left|"
                               r"group_right)\s*\(([^)]*)\)", s):
        labels |= {w.strip() for w in grouping.split(",") if w.strip()}
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*"
               r"\([^)]*\)", " ", s)
    for matchers in re.findall(r"\{([^{}]*)\}", s):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)",
                                 matchers))
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)                      # ranges
    s = re.sub(r"(?<![\w:])\d[\w.+-]*", " ", s)            # numbers, durations
    names, unknown = set(), set()
    for m in re.finditer(r"[A-Za-z_:][\w:]*", s):
        word = m.group(0)
        if re.match(r"\s*\(", s[m.end():]):
            if word not in PROMQL_FUNCTIONS:
                unknown.add(word)
        elif word.lower() not in PROMQL_KEYWORDS:
            names.add(word)
    return names, labels, unknown


def dashboard_exprs(dash):
    """[(where, PromQL)] of every panel target and query variable."""
    out = []

    def panels(ps):
        for p in ps:
            yield p
            for q in panels(p.get("panels", [])):  # collapsed rows
                yield q
    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append(("panel %r %s" % (p.get("title"), t.get("refId")),
                            t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q)
        if m:  # label_values(SELECTOR, LABEL): LABEL must be SELECTOR's
            out.append(("variable %r" % v.get("name"),
                        "count by (%s) (%s)" % (m.group(2), m.group(1))))
        elif q.strip():
            out.append(("variable %r" % v.get("name"), q))
    return out


def check_metric_list_against_source(here):
    """REGD_METRICS names exactly what server/metrics.cc registers."""
    src = os.path.join(here, "..", "server", "metrics.cc")
    if not os.path.exists(src):
        return  # deploy/ on its own
    with open(src) as f:
        names = set(re.findall(r'\.Name\("([A-Za-z_:][\w:]*)"\)', f.read()))
    for n in sorted(names - set(REGD_METRICS)):
        err("check_manifests.py", "server/metrics.cc exports %s, missing "
            "from REGD_METRICS" % n)
    for n in sorted(set(REGD_METRICS) - names):
        err("check_manifests.py", "REGD_METRICS lists %s, which "
            "server/metrics.cc does not export" % n)


def check_dashboard(path):
    where = os.path.basename(path)
    try:
        with open(path) as f:
            dash = json.load(f, object_pairs_hook=no_duplicate_keys)
    except ValueError as e:
        err(where, "not JSON: %s" % e)
        return 0
    for key in ("title", "uid", "panels", "schemaVersion"):
        if key not in dash:
            err(where, "missing %s" % key)
    series = exported_series()
    used = set()
    exprs = dashboard_exprs(dash)
    if not exprs:
        err(where, "no PromQL expressions")
    for w, expr in exprs:
        names, labels, unknown = promql_names(expr)
        for fn in sorted(unknown):
            err(where, "%s: %s( is not a PromQL function" % (w, fn))
        if not names:
            err(where, "%s: %r names no metric" % (w, expr))
        allowed = set(TARGET_LABELS)
        for n in sorted(names):
            if n not in series:
                err(where, "%s: %s is not a metric regd exports" % (w, n))
            else:
                allowed |= series[n]
                used.add(re.sub(r"_(bucket|sum|count)$", "", n)
                         if re.sub(r"_(bucket|sum|count)$", "", n)
                         in HISTOGRAMS else n)
        for label in sorted(labels - allowed):
            err(where, "%s: label %r is not a label of %s"
                % (w, label, ", ".join(sorted(names))))
    for n in sorted(set(REGD_METRICS) - used):
        err(where, "no panel shows %s" % n)
    ids = []

    def walk(ps):
        for p in ps:
            ids.append(p.get("id"))
            if p.get("type") != "row" and "gridPos" not in p:
                err(where, "panel %r has no gridPos" % p.get("title"))
            walk(p.get("panels", []))
    walk(dash.get("panels", []))
    if len(ids) != len(set(ids)) or None in ids:
        err(where, "panel ids must be present and unique")
    return len(exprs)


def check_pod(where, pod, labels, configmaps, namespace, docs,
              annotations=None):
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
            check_operating(cw, c, pod, annotations or {}, namespace, docs)
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
                      namespace_of(d), docs,
                      tmpl.get("metadata", {}).get("annotations", {}))
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
    files = argv[1:] or sorted(glob.glob(os.path.join(here, "*.yaml")) +
                               glob.glob(os.path.join(here, "*.json")))
    check_metric_list_against_source(here)
    for f in files:
        if f.endswith(".json"):
            n = check_dashboard(f)
            print("%s: %d PromQL expressions" % (os.path.basename(f), n))
            continue
        n = check_file(f)
        print("%s: %d objects" % (os.path.basename(f), n))
    for e in errors:
        print("error: " + e, file=sys.stderr)
    return 1 if errors or not files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
