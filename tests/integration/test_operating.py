#!/usr/bin/python3
"""Integration tests for operating regd: metrics, logs, flags and the drain on SIGTERM.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_operating.py [-k name]

Registries: REG (docker-registry 2.8, no auth) behind two fault proxies (PROXY for
the metrics, DPROXY for the drain), and BREG (htpasswd). Daemons:

  D    --metrics_listen=127.0.0.1:0 (the port it logs), scraped every second by a
       real Prometheus (Debian's /usr/bin/prometheus, on a free loopback port with
       its own storage directory). Known operations go through PROXY: N inline
       WriteLayer uploads of known sizes, one more whose first PUT the proxy
       answers 503 (one retry), an EXISTED repeat, an Exists and an Inspect of a
       missing tag. After a scrape that started once they had all ended, the
       values are read back through Prometheus' HTTP API (/api/v1/query) and
       compared with what was done and with what the proxy saw: blob outcomes,
       retries by reason, request body bytes (exactly the bytes the proxy read
       from regd), registry requests by method, operation and status class
       (exactly the proxy's log), gRPC calls by method and code. A direct scrape
       passes `promtool check metrics`.
  DP   --policy with a bearer-token tenant: the gRPC call metrics carry
       tenant="<name>" (and tenant="none" for a caller no tenant matched).
  JSON daemons (--log_format=json, at info and at debug) against BREG with
       per-call credentials (x-registry-auth): every stderr line is a JSON
       object with ts/level/msg; the access line of a call carries its request
       id (the caller's x-request-id, or one regd made, which comes back in the
       response's initial metadata), method, registry, repository, outcome,
       bytes and duration_ms; at debug, every line of gRPC and libcurl is JSON
       too and libcurl's lines name their call; no password, x-registry-auth
       value or Basic header ever reaches the log.
  Flags: --help/-h (exit 0, regd's flags and defaults on stdout), --version,
       a duration without a unit, a bad --log_format or --log_level, an
       unknown flag.
  Drain: --drain_delay=3s --shutdown_grace=10s; SIGTERM during a throttled
       upload: health turns NOT_SERVING, new calls (also on a new connection)
       are still served during the window, afterwards new connections are
       refused, the upload completes with its result and regd exits 0.
"""

import base64
import collections
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import paths, stubs, testing, util  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.fault_proxy import FaultProxy  # noqa: E402
from fixtures.registry import Registry  # noqa: E402
from fixtures.uploads import (Stream, StreamChecks, call_async, head_blob,  # noqa: E402
                              random_bytes, retry_config, sha256)

S = stubs.load()
pb = S.registry_pb2
HEALTH = S.health_pb2.HealthCheckResponse
CODE = grpc.StatusCode
T = 30
KiB = 1 << 10
MiB = 1 << 20
MAX = 4  # max_attempts of the write calls here

PROMETHEUS = os.environ.get("PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("PROMTOOL", "/usr/bin/promtool")

BASIC_USER = ("olga", "pw-olga-7e3b91c2d04f")
WRONG_PASSWORD = "pw-wrong-52ac0e19b7d3"
TENANT = "team-m"
TENANT_TOKEN = "tok-team-m-" + secrets.token_hex(16)
UNKNOWN_TOKEN = "tok-nobody-" + secrets.token_hex(16)

ENV = None
REG = None
BREG = None
PROXY = None
DPROXY = None
D = None
DP = None
PROM = None
_n = [0]


# -- Prometheus -------------------------------------------------------------------------------

_PROM_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {job}
    metrics_path: /metrics
    static_configs:
      - targets: [{targets}]
"""


class Prometheus:
    """A real Prometheus scraping `targets` ("host:port") every second, as job `job`.

    Listens on a free loopback port, keeps its TSDB under WORKDIR, logs to
    WORKDIR/prometheus-PORT/prometheus.log, and is killed when the context exits.
    """

    def __init__(self, workdir, targets, job="regd", start_timeout=30):
        self.workdir = workdir
        self.targets = list(targets)
        self.job = job
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self.log_path = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        if not os.access(PROMETHEUS, os.X_OK):
            raise RuntimeError("%s not found (apt-get install prometheus)" % PROMETHEUS)
        for _ in range(5):  # the free port can be taken between probe and bind
            if self._start_once():
                return self
        raise RuntimeError("prometheus could not bind a port:\n" + util.read_tail(self.log_path))

    def _start_once(self):
        self.port = util.free_port()
        d = os.path.join(self.workdir, "prometheus-%d" % self.port)
        os.makedirs(os.path.join(d, "data"), exist_ok=True)
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(_PROM_CONFIG.format(job=self.job,
                                        targets=", ".join("'%s'" % t for t in self.targets)))
        self.log_path = os.path.join(d, "prometheus.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, "--config.file=" + cfg,
                 "--storage.tsdb.path=" + os.path.join(d, "data"),
                 "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=info"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        util.track(self.proc)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                util.untrack(self.proc)
                text = util.read_tail(self.log_path)
                if "address already in use" in text:
                    return False
                raise RuntimeError("prometheus exited with %s:\n%s" % (self.proc.returncode, text))
            try:
                status, _, _ = util.http_get(self.url + "/-/ready", timeout=2)
                if status == 200:
                    return True
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus not ready in %ss:\n%s"
                                   % (self.start_timeout, util.read_tail(self.log_path)))
            time.sleep(0.05)

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            util.untrack(self.proc)
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def query(self, expr):
        """An instant query now: [(labels, value)]."""
        status, _, body = util.http_get(
            self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        if status != 200 or doc.get("status") != "success":
            raise AssertionError("query %r: HTTP %s %r" % (expr, status, body[:500]))
        if doc["data"]["resultType"] != "vector":
            raise AssertionError("query %r: want a vector, got %r" % (expr, doc["data"]))
        return [(r["metric"], float(r["value"][1])) for r in doc["data"]["result"]]

    def one(self, expr):
        """The value of the only series `expr` selects, or None when there is none."""
        res = self.query(expr)
        if not res:
            return None
        if len(res) != 1:
            raise AssertionError("query %r: want one series, got %r" % (expr, res))
        return res[0][1]

    def wait_for_scrape_after(self, wall_time, timeout=15):
        """Waits for a successful scrape of the job that started after `wall_time`."""
        def scraped():
            up = self.query('up{job="%s"}' % self.job)
            ts = self.query('timestamp(up{job="%s"})' % self.job)
            return (len(up) == len(self.targets) and all(v == 1 for _, v in up)
                    and len(ts) == len(self.targets) and all(v > wall_time for _, v in ts))
        util.wait_until(scraped, timeout, interval=0.2,
                        what="a Prometheus scrape after %.3f" % wall_time)


# -- the exposition format --------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {label: value}, float)] of a /metrics page (text format 0.0.4)."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def series(samples, name, **labels):
    """The samples of `name` whose labels include `labels`: [(labels, value)]."""
    return [(lab, v) for n, lab, v in samples
            if n == name and all(lab.get(k) == want for k, want in labels.items())]


def metrics_port(daemon):
    m = re.search(r"metrics on port (\d+) at /metrics", daemon.log())
    if not m:
        raise AssertionError("regd logged no metrics port:\n" + daemon.log())
    return int(m.group(1))


def scrape(daemon):
    status, headers, body = util.http_get("http://127.0.0.1:%d/metrics" % metrics_port(daemon))
    if status != 200:
        raise AssertionError("GET /metrics: %s %r" % (status, body[:300]))
    return body.decode("utf-8"), headers


# -- setup ------------------------------------------------------------------------------------

def token_hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def write_json(name, obj):
    path = os.path.join(ENV.workdir, name)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def setUpModule():
    global ENV, REG, BREG, PROXY, DPROXY, D, DP, PROM
    ENV = testing.Env(prefix="regd-operating-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    REG = ENV.enter(Registry(ENV.workdir, auth="none"), "registry-plain")
    BREG = ENV.enter(Registry(ENV.workdir, auth="basic", users=dict([BASIC_USER])),
                     "registry-basic")
    PROXY = ENV.enter(FaultProxy(REG.host))
    DPROXY = ENV.enter(FaultProxy(REG.host))
    D = ENV.enter(Daemon(ENV.workdir, insecure_registries=[PROXY.host],
                         extra_args=["--metrics_listen=127.0.0.1:0"], rpc_timeout=T), "regd")
    PROM = ENV.enter(Prometheus(ENV.workdir, ["127.0.0.1:%d" % metrics_port(D)]), "prometheus")
    policy = write_json("policy.json", {"tenants": [
        {"name": TENANT, "token_sha256": token_hash(TENANT_TOKEN),
         "allow": [{"prefix": REG.host + "/tenant-m/", "actions": ["pull", "push"]}]}]})
    DP = ENV.enter(Daemon(ENV.workdir, insecure_registries=[REG.host],
                          extra_args=["--metrics_listen=127.0.0.1:0", "--policy=" + policy],
                          rpc_timeout=T), "regd-policy")


def retry():
    return retry_config(pb, max_attempts=MAX, initial_delay=0.05)


def uniq(name):
    _n[0] += 1
    return "%s-%d" % (name, _n[0])


class OperatingCase(testing.IntegrationCase, StreamChecks):
    def write(self, daemon, repo, data, metadata=()):
        """An inline WriteLayer, drained: (Stream, the call)."""
        call = daemon.stub.WriteLayer(pb.WriteLayerRequest(
            repo=repo, layer=pb.BlobSource(data=data), retry=retry()), timeout=T,
            metadata=list(metadata))
        return Stream(call), call


# -- a: metrics through a real Prometheus ---------------------------------------------------------

class PrometheusTest(OperatingCase):
    def test_prometheus_reads_back_known_operations(self):
        PROXY.clear_faults()
        PROXY.reset_counters()
        # Prometheus has the daemon as a healthy target before anything happens.
        PROM.wait_for_scrape_after(0)
        repo = "ops/metrics"
        ref_repo = "%s/%s" % (PROXY.host, repo)
        sizes = [100 * KiB, 300 * KiB + 7, 1 * MiB + 3]
        for i, size in enumerate(sizes):
            s, _ = self.write(D, ref_repo, random_bytes(size, "metrics-%d" % i))
            self.assertLayerStream(s, size, "UPLOADED")
            self.assertEqual(s.retries(), [], s.summary())
        retried = random_bytes(200 * KiB + 1, "metrics-retried")
        PROXY.add_fault("status", method="PUT", path=r"/blobs/uploads/", nth=1, status=503)
        s, _ = self.write(D, ref_repo, retried)
        self.assertLayerStream(s, len(retried), "UPLOADED")
        self.assertRetryRuns(s.retries(), [[1]], MAX, error_has="503", summary=s.summary())
        s, _ = self.write(D, ref_repo, retried)
        self.assertLayerStream(s, len(retried), "EXISTED")
        r = D.stub.Exists(pb.ExistsRequest(image_ref=ref_repo + ":no-such-tag"), timeout=T)
        self.assertFalse(r.exists)
        self.assertRpcError(CODE.NOT_FOUND, D.stub.Inspect,
                            pb.InspectRequest(image_ref=ref_repo + ":no-such-tag"), timeout=T,
                            metadata=[("x-request-id", "ops-inspect-1")])
        self.assertTrue(PROXY.wait_idle())
        done = time.time()
        PROM.wait_for_scrape_after(done)

        n = len(sizes)
        q = PROM.one
        self.assertEqual(q('regd_blobs_total{outcome="uploaded"}'), n + 1)
        self.assertEqual(q('regd_blobs_total{outcome="existed"}'), 1)
        self.assertEqual({m["outcome"] for m, _ in PROM.query("regd_blobs_total")},
                         {"uploaded", "existed"})
        retries = PROM.query("regd_retries_total")
        self.assertEqual([(m.get("reason"), v) for m, v in retries], [("unavailable", 1)])
        self.assertEqual(q("sum(regd_retries_total)"), 1)

        # Request body bytes: every byte the proxy read from regd, the 503'd PUT's
        # body included (the proxy reads it before it answers), nothing else.
        sent = q('regd_registry_sent_bytes_total{registry="%s"}' % PROXY.host)
        self.assertEqual(sent, PROXY.bytes_received())
        self.assertEqual(sent, sum(sizes) + 2 * len(retried))
        self.assertGreater(q('regd_registry_received_bytes_total{registry="%s"}' % PROXY.host), 0)

        # Registry requests by method, operation and status class: the proxy's log.
        log = PROXY.log()
        want = collections.Counter(
            (e.method, {"tags": "other"}.get(e.kind, e.kind), "%dxx" % (e.status // 100))
            for e in log)
        got = {(m["method"], m["operation"], m["status_class"]): v for m, v in PROM.query(
            'regd_registry_requests_total{registry="%s"}' % PROXY.host)}
        self.assertEqual(got, dict(want), "\n".join(
            "%s %s -> %s" % (e.method, e.path, e.status) for e in log))
        self.assertEqual(got[("PUT", "upload", "5xx")], 1)
        self.assertEqual(got[("POST", "upload", "2xx")], n + 1)
        self.assertEqual(q('sum(regd_registry_request_duration_seconds_count{registry="%s"})'
                           % PROXY.host), len(log))
        self.assertEqual({m["registry"] for m, _ in PROM.query("regd_registry_requests_total")},
                         {PROXY.host})

        # gRPC calls.
        def handled(method, code):
            return q('grpc_server_handled_total{grpc_service="regd.v1.Registry",'
                     'grpc_method="%s",grpc_code="%s"}' % (method, code))
        self.assertEqual(handled("WriteLayer", "OK"), n + 2)
        self.assertEqual(handled("Exists", "OK"), 1)
        self.assertEqual(handled("Inspect", "NotFound"), 1)
        self.assertEqual(q("sum(grpc_server_handled_total)"), n + 4)
        started = {(m["grpc_method"], m["grpc_type"]): v
                   for m, v in PROM.query("grpc_server_started_total")}
        self.assertEqual(started, {("WriteLayer", "server_stream"): n + 2,
                                   ("Exists", "unary"): 1, ("Inspect", "unary"): 1})
        self.assertEqual(q('grpc_server_handling_seconds_count{grpc_method="WriteLayer"}'), n + 2)
        self.assertEqual(q('grpc_server_handling_seconds_bucket{grpc_method="Inspect",le="+Inf"}'),
                         1)
        p95 = q('histogram_quantile(0.95, sum by (le) '
                '(grpc_server_handling_seconds_bucket{grpc_method="WriteLayer"}))')
        self.assertGreater(p95, 0)
        self.assertLess(p95, 30)
        # No tenant label without a policy.
        for m, _ in PROM.query('{__name__=~"grpc_server_.*"}'):
            self.assertNotIn("tenant", m)
        self.assertEqual(q("regd_uploads_in_flight"), 0)
        self.assertEqual(q("regd_streams_in_flight"), 0)
        self.assertEqual(q("regd_upload_slot_waits_total"), 0)
        self.assertEqual(PROM.query("regd_token_fetches_total"), [])
        info = PROM.query("regd_build_info")
        self.assertEqual(len(info), 1, info)
        self.assertEqual(info[0][1], 1)
        version = subprocess.run([paths.regd_bin(), "--version"], stdout=subprocess.PIPE,
                                 text=True).stdout.split()[1]
        self.assertTrue(info[0][0].get("version", "").startswith(version), (info, version))

        # The text log's access line ends with the caller's request id.
        lines = [ln for ln in D.log().splitlines() if " Inspect " in ln]
        self.assertEqual(len(lines), 1, D.log())
        self.assertTrue(lines[0].endswith(" request_id=ops-inspect-1"), lines[0])
        self.assertIn(" outcome=NOT_FOUND ", lines[0])

    def test_dashboard_queries_evaluate(self):
        # Every PromQL expression of deploy/grafana-dashboard.json runs on this
        # Prometheus (Grafana's variables filled in), and the ones that need no
        # traffic have data.
        with open(os.path.join(paths.source_dir(), "deploy", "grafana-dashboard.json")) as f:
            dash = json.load(f)
        exprs = []

        def walk(panels):
            for p in panels:
                exprs.extend((p.get("title"), t["expr"]) for t in p.get("targets", [])
                             if "expr" in t)
                walk(p.get("panels", []))
        walk(dash["panels"])
        for v in dash["templating"]["list"]:
            if v.get("type") == "query":
                m = re.fullmatch(r"label_values\((.*), *(\w+)\)", v["query"]["query"])
                self.assertIsNotNone(m, v)
                exprs.append((v["name"], "count by (%s) (%s)" % (m.group(2), m.group(1))))
        self.assertGreater(len(exprs), 15)
        PROM.wait_for_scrape_after(0)
        for title, expr in exprs:
            q = (expr.replace("$__rate_interval", "1m").replace("$job", "regd")
                 .replace("$instance", ".*"))
            self.assertNotIn("$", q, title)
            res = PROM.query(q)  # raises unless Prometheus evaluated it
            if re.search(r"\b(up|regd_build_info|regd_uploads_in_flight|"
                         r"regd_streams_in_flight)\b", q):
                self.assertTrue(res, "%s: %s has no data" % (title, q))

    def test_promtool_checks_a_direct_scrape(self):
        # A daemon of its own (D's counts belong to the test above).
        d = Daemon(ENV.workdir, insecure_registries=[REG.host], rpc_timeout=T,
                   extra_args=["--metrics_listen=127.0.0.1:0"])
        d.start()
        ENV.logs.append(("regd-promtool", d.stderr_path))
        self.addCleanup(d.stop)
        # Something in every family first: calls, registry requests, blobs.
        s, _ = self.write(d, "%s/ops/promtool" % REG.host, random_bytes(1000, "promtool"))
        self.assertLayerStream(s, 1000, "UPLOADED")
        self.assertRpcError(CODE.NOT_FOUND, d.stub.Inspect,
                            pb.InspectRequest(image_ref="%s/ops/promtool:none" % REG.host),
                            timeout=T)
        text, headers = scrape(d)
        self.assertTrue(headers.get("Content-Type", "").startswith("text/plain"), headers)
        self.assertIn("grpc_server_handling_seconds_bucket{", text)
        res = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(res.returncode, 0, "promtool check metrics:\n%s\n---\n%s"
                         % (res.stdout.decode(errors="replace"), text[:4000]))
        samples = parse_metrics(text)
        names = {n for n, _, _ in samples}
        for want in ("grpc_server_started_total", "grpc_server_handled_total",
                     "grpc_server_handling_seconds_bucket", "regd_registry_requests_total",
                     "regd_registry_request_duration_seconds_bucket",
                     "regd_registry_sent_bytes_total", "regd_registry_received_bytes_total",
                     "regd_blobs_total", "regd_uploads_in_flight", "regd_streams_in_flight",
                     "regd_upload_slot_waits_total", "regd_upload_slot_wait_seconds_bucket",
                     "regd_build_info"):
            self.assertIn(want, names)


# -- b: the tenant label --------------------------------------------------------------------------

class TenantLabelTest(OperatingCase):
    def test_call_metrics_carry_the_tenant(self):
        me = [("authorization", "Bearer " + TENANT_TOKEN)]
        repo = "%s/tenant-m/app" % REG.host
        self.assertFalse(DP.stub.Exists(pb.ExistsRequest(image_ref=repo + ":none"), timeout=T,
                                        metadata=me).exists)
        data = random_bytes(5000, "tenant")
        s, _ = self.write(DP, repo, data, metadata=me)
        self.assertLayerStream(s, len(data), "UPLOADED")
        self.assertRpcError(CODE.PERMISSION_DENIED, DP.stub.Exists,
                            pb.ExistsRequest(image_ref="%s/other/app:none" % REG.host),
                            timeout=T, metadata=me)
        self.assertRpcError(CODE.UNAUTHENTICATED, DP.stub.Exists,
                            pb.ExistsRequest(image_ref=repo + ":none"), timeout=T,
                            metadata=[("authorization", "Bearer " + UNKNOWN_TOKEN)])
        text, _ = scrape(DP)
        samples = parse_metrics(text)

        def one(name, **labels):
            got = series(samples, name, **labels)
            self.assertEqual(len(got), 1, "%s %s: %s" % (name, labels, got))
            return got[0][1]
        self.assertEqual(one("grpc_server_handled_total", tenant=TENANT, grpc_method="Exists",
                             grpc_code="OK"), 1)
        self.assertEqual(one("grpc_server_handled_total", tenant=TENANT, grpc_method="Exists",
                             grpc_code="PermissionDenied"), 1)
        self.assertEqual(one("grpc_server_handled_total", tenant=TENANT,
                             grpc_method="WriteLayer", grpc_code="OK"), 1)
        self.assertEqual(one("grpc_server_handled_total", tenant="none", grpc_method="Exists",
                             grpc_code="Unauthenticated"), 1)
        self.assertEqual(one("grpc_server_started_total", tenant=TENANT, grpc_method="Exists"), 2)
        self.assertEqual(one("grpc_server_started_total", tenant="none", grpc_method="Exists"), 1)
        self.assertEqual(one("grpc_server_handling_seconds_count", tenant=TENANT,
                             grpc_method="WriteLayer"), 1)
        self.assertEqual(one("grpc_server_handling_seconds_bucket", tenant=TENANT,
                             grpc_method="Exists", le="+Inf"), 2)
        calls = [(n, lab) for n, lab, _ in samples if n.startswith("grpc_server_")]
        self.assertTrue(calls)
        for n, lab in calls:
            self.assertIn(lab.get("tenant"), (TENANT, "none"), (n, lab))
        self.assertEqual(sum(v for _, v in series(samples, "grpc_server_handled_total")), 4)
        for secret in (TENANT_TOKEN, UNKNOWN_TOKEN, token_hash(TENANT_TOKEN)):
            self.assertNotIn(secret, text)
        # The access line names the tenant too.
        lines = [ln for ln in DP.log().splitlines() if " WriteLayer " in ln]
        self.assertEqual(len(lines), 1, DP.log())
        self.assertIn("[%s]" % TENANT, lines[0])
        self.assertTrue(lines[0].endswith(" tenant=" + TENANT), lines[0])
        self.assertNotIn(TENANT_TOKEN, DP.log())


# -- c: JSON logs, request ids, no secrets --------------------------------------------------------

_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def encode_xra(user, password):
    raw = json.dumps({"username": user, "password": password}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def request_id_of(metadata):
    ids = [v for k, v in (metadata or ()) if k == "x-request-id"]
    return ids[0] if len(ids) == 1 else ids


class JsonLogTest(OperatingCase):
    def run_calls(self, level):
        """Calls on a fresh JSON daemon at `level`; returns (daemon log lines, facts)."""
        d = Daemon(ENV.workdir, insecure_registries=[BREG.host], rpc_timeout=T,
                   extra_args=["--log_format=json", "--log_level=" + level])
        d.start()
        ENV.logs.append(("regd-json-" + level, d.stderr_path))
        ENV.callback(d.kill)
        right = encode_xra(*BASIC_USER)
        wrong = encode_xra(BASIC_USER[0], WRONG_PASSWORD)
        facts = {"xra": [right, wrong]}
        repo = "%s/ops/logs-%s" % (BREG.host, level)
        data = random_bytes(7000 + len(level), "json-" + level)
        facts["data"] = data
        facts["repo"] = repo
        t0 = time.monotonic()
        s, call = self.write(d, repo, data, metadata=[("x-registry-auth", right),
                                                      ("x-request-id", "test-req-123")])
        facts["write_ms"] = (time.monotonic() - t0) * 1000
        self.assertLayerStream(s, len(data), "UPLOADED")
        self.assertEqual(request_id_of(call.initial_metadata()), "test-req-123")
        # No x-request-id: regd makes one and sends it back.
        r, c = d.stub.Exists.with_call(pb.ExistsRequest(image_ref=repo + ":none"), timeout=T,
                                       metadata=[("x-registry-auth", right)])
        self.assertFalse(r.exists)
        made = request_id_of(c.initial_metadata())
        self.assertRegex(made, _SANE_ID)
        facts["made"] = made
        # An id that is not sane (a space, or too long) is replaced by a made one.
        insane = []
        for bad in ("has space", "x" * 129):
            r, c = d.stub.Exists.with_call(pb.ExistsRequest(image_ref=repo + ":none"), timeout=T,
                                           metadata=[("x-registry-auth", right),
                                                     ("x-request-id", bad)])
            got = request_id_of(c.initial_metadata())
            self.assertRegex(got, _SANE_ID)
            self.assertNotEqual(got, bad)
            self.assertNotIn(got, (made, "test-req-123"))
            insane.append((bad, got))
        facts["insane"] = insane
        # Wrong credentials: refused, its line still has the id, never the password.
        err = self.assertRpcError(CODE.UNAUTHENTICATED, d.stub.Exists,
                                  pb.ExistsRequest(image_ref=repo + ":none"), timeout=T,
                                  metadata=[("x-registry-auth", wrong),
                                            ("x-request-id", "test-req-wrong")])
        self.assertEqual(request_id_of(err.initial_metadata()), "test-req-wrong")
        self.assertNotIn(WRONG_PASSWORD, err.details())
        d.stop()  # the shutdown lines too
        with open(d.stderr_path, "rb") as f:
            raw = f.read().decode("utf-8")
        return raw, facts

    def check_log(self, raw, facts, level):
        lines = raw.splitlines()
        self.assertTrue(raw.endswith("\n"))
        objs = []
        for i, line in enumerate(lines):
            try:
                o = json.loads(line)
            except ValueError:
                self.fail("line %d is not JSON: %r" % (i + 1, line))
            self.assertIsInstance(o, dict, line)
            self.assertRegex(o.get("ts", ""), _TS, line)
            self.assertIn(o.get("level"), ("debug", "info", "warning", "error"), line)
            self.assertIsInstance(o.get("msg"), str, line)
            objs.append(o)
        msgs = [o["msg"] for o in objs]
        self.assertTrue(any(m.startswith("regd listening on ") for m in msgs), msgs[:20])
        self.assertIn("regd stopped", msgs)

        access = [o for o in objs if "method" in o and "outcome" in o]
        by_id = collections.defaultdict(list)
        for o in access:
            by_id[o.get("request_id")].append(o)
        self.assertEqual(len(access), 5, access)
        (w,) = by_id["test-req-123"]
        self.assertEqual(w["method"], "WriteLayer")
        self.assertEqual(w["registry"], BREG.host)
        self.assertEqual(w["repository"], facts["repo"].split("/", 1)[1])
        self.assertEqual(w["outcome"], "OK")
        self.assertEqual(w["bytes"], len(facts["data"]))
        self.assertIsInstance(w["duration_ms"], int)
        self.assertGreaterEqual(w["duration_ms"], 0)
        self.assertLessEqual(w["duration_ms"], facts["write_ms"] + 1)
        self.assertEqual(w["level"], "info")
        (e,) = by_id[facts["made"]]
        self.assertEqual((e["method"], e["outcome"], e["bytes"]), ("Exists", "OK", 0))
        self.assertEqual(e["repository"], facts["repo"].split("/", 1)[1])
        for bad, got in facts["insane"]:
            self.assertEqual(len(by_id[got]), 1, got)
            self.assertNotIn(bad, raw)
        (x,) = by_id["test-req-wrong"]
        self.assertEqual((x["method"], x["outcome"]), ("Exists", "UNAUTHENTICATED"))
        for o in access:
            self.assertIn("duration_ms", o)
            self.assertIn("bytes", o)

        if level == "debug":
            # gRPC's and libcurl's own lines come through the same logger, as JSON.
            grpc_lines = [o for o in objs if o["msg"].startswith("grpc: ")]
            curl_lines = [o for o in objs if o["msg"].startswith("curl: ")]
            self.assertTrue(grpc_lines, "no gRPC line at debug")
            self.assertTrue(curl_lines, "no libcurl line at debug")
            # libcurl works only for calls: each of its lines names its call.
            ids = set(by_id)
            for o in curl_lines:
                self.assertIn(o.get("request_id"), ids, o)
            self.assertTrue([o for o in curl_lines if o["request_id"] == "test-req-123"])
            self.assertTrue([o for o in curl_lines if o["request_id"] == facts["made"]])
        else:
            self.assertEqual([o for o in objs if o["level"] == "debug"], [])

        # Secrets: the passwords, the x-registry-auth values, any Basic header.
        basic = base64.b64encode(("%s:%s" % BASIC_USER).encode()).decode()
        wrong_basic = base64.b64encode(
            ("%s:%s" % (BASIC_USER[0], WRONG_PASSWORD)).encode()).decode()
        for secret in [BASIC_USER[1], WRONG_PASSWORD, basic, wrong_basic] + facts["xra"]:
            self.assertNotIn(secret, raw)
        self.assertIsNone(re.search(r"(?i)basic\s+[A-Za-z0-9+/=]{8,}", raw))
        self.assertIsNone(re.search(r"(?i)authorization\s*:", raw))
        self.assertNotIn("x-registry-auth:", raw.lower())

    def test_json_lines_at_info(self):
        raw, facts = self.run_calls("info")
        self.check_log(raw, facts, "info")

    def test_json_lines_at_debug_with_grpc_and_curl(self):
        raw, facts = self.run_calls("debug")
        self.check_log(raw, facts, "debug")


# -- d: flags -------------------------------------------------------------------------------------

class FlagsTest(testing.IntegrationCase):
    def run_regd(self, *args):
        return subprocess.run([paths.regd_bin()] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=20,
                              stdin=subprocess.DEVNULL)

    @staticmethod
    def help_defaults(out):
        """{flag: default} of Abseil's help text ("--name (text); default: VALUE;")."""
        entries = re.split(r"\n    (?=--)", out.split("Flags from", 1)[-1])
        got = {}
        for e in entries[1:]:
            text = " ".join(e.split())
            m = re.match(r"^--(\w+) \(.*\); default: (.*?);", text)
            if m:
                got[m.group(1)] = m.group(2)
        return got

    def test_help_lists_regds_flags_with_defaults(self):
        outs = []
        for flag in ("--help", "-h"):
            res = self.run_regd(flag)
            self.assertEqual(res.returncode, 0, (flag, res.stderr))
            out = res.stdout
            defaults = self.help_defaults(out)
            self.assertEqual(defaults.get("listen"), '"127.0.0.1:50051"', out)
            self.assertEqual(defaults.get("drain_delay"), "5s", out)
            self.assertEqual(defaults.get("shutdown_grace"), "30s", out)
            self.assertEqual(defaults.get("metrics_listen"), '""', out)
            self.assertEqual(defaults.get("log_format"), '"text"', out)
            self.assertEqual(defaults.get("log_level"), '"info"', out)
            self.assertRegex(defaults.get("max_concurrent_calls", ""), r"^[1-9][0-9]*$")
            # regd's own flags only: not Abseil's or gRPC's.
            self.assertEqual(out.count("Flags from"), 1, out)
            self.assertNotIn("--flagfile", out)
            self.assertNotIn("--fromenv", out)
            outs.append(out)
        self.assertEqual(outs[0], outs[1])

    def test_version(self):
        res = self.run_regd("--version")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertRegex(res.stdout, r"^regd \S+ \(commit \S+\)\n$")

    def test_duration_without_a_unit(self):
        res = self.run_regd("--stall_timeout=5")
        self.assertEqual(res.returncode, 2, res.stderr)
        self.assertIn("use a unit", res.stderr)
        self.assertIn("--stall_timeout", res.stderr)

    def test_bad_log_flags(self):
        for flag in ("--log_format=xml", "--log_level=loud", "--access_log_level=chatty"):
            res = self.run_regd(flag, "--listen=127.0.0.1:0")
            self.assertEqual(res.returncode, 2, (flag, res.stderr))
            self.assertIn(flag.split("=")[0], res.stderr)

    def test_unknown_flag(self):
        res = self.run_regd("--no_such_flag=1", "--listen=127.0.0.1:0")
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("no_such_flag", res.stderr)


# -- e: drain on SIGTERM --------------------------------------------------------------------------

DRAIN = 3.0
GRACE = 10.0
SLOW_SIZE = 3 * MiB // 2
SLOW_RATE = 256 * KiB  # bytes/s: the upload takes about 6 s


class DrainTest(OperatingCase):
    def check(self, channel, service=""):
        stub = S.health_pb2_grpc.HealthStub(channel)
        return stub.Check(S.health_pb2.HealthCheckRequest(service=service), timeout=5).status

    def test_sigterm_drains_then_finishes_in_flight_calls(self):
        d = Daemon(ENV.workdir, insecure_registries=[DPROXY.host], rpc_timeout=T,
                   stop_timeout=DRAIN + GRACE + 10,
                   extra_args=["--drain_delay=%ds" % DRAIN, "--shutdown_grace=%ds" % GRACE])
        d.start()
        ENV.logs.append(("regd-drain", d.stderr_path))
        ENV.callback(d.kill)
        self.assertEqual(self.check(d.channel), HEALTH.SERVING)
        DPROXY.clear_faults()
        DPROXY.add_fault("throttle", method="PUT", path=r"/blobs/uploads/", times=None,
                         rate=SLOW_RATE)
        repo = "ops/drain"
        data = random_bytes(SLOW_SIZE, "drain")
        call = d.stub.WriteLayer(pb.WriteLayerRequest(
            repo="%s/%s" % (DPROXY.host, repo), layer=pb.BlobSource(data=data), retry=retry()),
            timeout=60)
        up = call_async(lambda: Stream(call))
        util.wait_until(lambda: any(e.method == "PUT" and e.body_in > 0 for e in DPROXY.log()),
                        10, what="the upload's PUT to be under way")
        t_term = time.monotonic()
        d.signal(signal.SIGTERM)

        # The drain window: NOT_SERVING, yet new calls are served.
        util.wait_until(lambda: self.check(d.channel) == HEALTH.NOT_SERVING, 2, interval=0.05,
                        what="health NOT_SERVING")
        self.assertEqual(self.check(d.channel, "regd.v1.Registry"), HEALTH.NOT_SERVING)
        r = d.stub.Exists(pb.ExistsRequest(image_ref="%s/%s:none" % (DPROXY.host, repo)),
                          timeout=5)
        self.assertFalse(r.exists)
        with grpc.insecure_channel(d.target) as fresh:  # a new connection is accepted too
            stub = S.registry_pb2_grpc.RegistryStub(fresh)
            self.assertFalse(stub.Exists(pb.ExistsRequest(
                image_ref="%s/%s:none" % (DPROXY.host, repo)), timeout=5).exists)
            for _ in range(3):
                self.assertEqual(self.check(fresh), HEALTH.NOT_SERVING)
                time.sleep(0.1)
        in_window = time.monotonic() - t_term
        self.assertLess(in_window, DRAIN, "the checks took past the drain window")
        self.assertTrue(d.alive())
        self.assertTrue(up.is_alive(), "the upload ended before the drain window did")

        # After the window: the listener is closed, the upload goes on.
        time.sleep(max(0, DRAIN + 0.5 - (time.monotonic() - t_term)))
        self.assertTrue(up.is_alive(), "the upload ended too early for this check")
        with grpc.insecure_channel(d.target) as late:
            stub = S.registry_pb2_grpc.RegistryStub(late)
            self.assertRpcError(CODE.UNAVAILABLE, stub.Exists,
                                pb.ExistsRequest(image_ref="%s/%s:none" % (DPROXY.host, repo)),
                                timeout=3)

        up.join(timeout=GRACE + 5)
        self.assertFalse(up.is_alive(), "the upload did not end")
        self.assertIsNone(up.exc)
        s = up.value
        self.assertLayerStream(s, len(data), "UPLOADED")
        self.assertEqual(head_blob(REG.url, repo, sha256(data)), 200)
        upload_done = time.monotonic() - t_term

        rc = d.wait(DRAIN + GRACE + 10)
        took = time.monotonic() - t_term
        DPROXY.clear_faults()
        self.assertEqual(rc, 0, d.log())
        self.assertGreaterEqual(took, DRAIN, "regd stopped before the drain window ended")
        self.assertGreaterEqual(took, upload_done)
        self.assertLess(took, DRAIN + GRACE, "regd waited past the grace period")
        log = d.log()
        self.assertIn("draining: health is NOT_SERVING", log)
        self.assertIn("regd stopped", log)


if __name__ == "__main__":
    testing.main("operating")
