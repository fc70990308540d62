#!/usr/bin/python3
"""Push at the physical limit (issue 10): regd's CPU per pushed byte and its wall
time against the floor clients, over plain HTTP and TLS, and many pushes at once.

    bench/run.sh --push-limit [--parts plain,tls,many] [--size-mib 1024] [--runs 3]
                              [--warmup 1] [--concurrency 4] [--concurrent 16]
                              [--concurrent-mib 256] [--concurrent-layers 1]
                              [--concurrent-runs 2] [--regd-flag=--FLAG=VALUE ...]
                              [--perf] [--perf-dir DIR] [--out FILE]

Everything runs side by side in one run, against Debian's docker-registry 2.8
on 127.0.0.1: a fresh registry (and storage directory) for every push, sync
between pushes (outside the timed part), methods interleaved run by run, one
untimed curl push per transport first (--warmup). regd is a copy of $REGD_BIN
(default build/server/regd) taken at the start, so a rebuild during the run
changes nothing; its --regd-flag arguments are passed to every daemon.

plain  bench.py's layout (--size-mib split over 4 layers + config, cached in
       $BENCH_DIR), plain HTTP:
         regd      a fresh daemon per run (--insecure_registries=<registry>);
                   PushImage(OciLayout, concurrency --concurrency), stream
                   drained. Wall = the call; CPU = the daemon's utime+stime
                   from /proc/PID/stat before/after; peak RSS = VmHWM.
         sendfile  the floor: bench/sendfile_push.py, one process under
                   /usr/bin/time: per blob a POST for the upload URL, then one
                   monolithic PUT ?digest= whose body goes out with
                   os.sendfile on a plain socket; --concurrency blobs at once,
                   then the manifest PUT. Wall and CPU (getrusage, all its
                   threads) are the client's own, over the push only; the
                   interpreter's start (~0.05 s CPU) is in the per-run table.
         curl      parallel `curl -T FILE` PUTs (as bench.py's curl floor);
                   CPU summed and RSS maxed over every curl process.
       Targets: regd CPU <= 1.5 x sendfile, regd wall <= 1.05 x sendfile.
tls    the same layout to a docker-registry serving TLS (http.tls: a leaf for
       IP:127.0.0.1 signed by a CA, both made with openssl here):
         regd      started with --config {"registries": {HOST: {"ca_bundle": CA}}}
         curl      parallel `curl -T FILE --cacert CA` PUTs: the TLS floor
         pyssl     reference only: bench/sendfile_push.py --tls-ca CA, the
                   same requests over Python's ssl (OpenSSL), each body sent
                   with SSLSocket.sendall of 1 MiB reads (no kTLS in 3.11)
       Targets: regd CPU <= 1.0 x curl, regd wall <= 1.05 x curl.
many   --concurrent distinct images of --concurrent-mib each (--concurrent-layers
       layers + config; cached in $BENCH_DIR), to one plain-HTTP registry:
         regd      one fresh daemon, --concurrent PushImage calls started
                   together from this process (one thread per call, one
                   channel); VmRSS and Threads polled every 50 ms, VmHWM at
                   the end.
         sendfile  one bench/sendfile_push.py process pushing all the images
                   at once (one thread per image, --concurrency blobs each).
       Aggregate = total bytes / wall (first start to last answer); fairness =
       the slowest push's time / the median push's time.
       Targets: regd aggregate >= 0.9 x sendfile's, peak RSS < 128 MiB,
       slowest <= 1.5 x median.

Every push is verified: `skopeo inspect --raw` must return the layout's
manifest bytes, and every blob must answer HEAD with its size.

--perf: after the timed runs, one more regd push per part, with
`perf record -g -p PID` attached to the daemon for the push; the first
--perf-lines lines of `perf report --stdio --no-children --sort dso,sym -g none`
go to DIR/push-limit-perf-<part>.txt (--perf-dir, default: the directory of
--out, else the current one). These runs are not in the tables.
"""

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import gzip
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench as B  # noqa: E402  (also puts tests/ on sys.path)

from fixtures import certs as certs_mod  # noqa: E402
from fixtures import daemon as daemon_mod  # noqa: E402
from fixtures import paths  # noqa: E402
from fixtures import registry as registry_mod  # noqa: E402
from fixtures import util  # noqa: E402

MiB = B.MiB
GiB = 1024 * MiB
PYTHON = "/usr/bin/python3"
SENDFILE_PUSH = os.path.join(HERE, "sendfile_push.py")
SAMPLE_S = 0.05

TARGET_PLAIN_CPU = 1.5    # regd CPU / sendfile CPU
TARGET_PLAIN_WALL = 1.05  # regd wall / sendfile wall
TARGET_TLS_CPU = 1.0      # regd CPU / curl CPU
TARGET_TLS_WALL = 1.05    # regd wall / curl wall
TARGET_MANY_AGG = 0.9     # regd aggregate / sendfile aggregate (at least)
TARGET_MANY_RSS = 128.0   # MiB (under)
TARGET_MANY_FAIR = 1.5    # slowest / median (at most)

log = B.log


class Res:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self):
        keys = ("wall", "cpu", "rss_kb", "registry_cpu")
        return " ".join("%s %s" % (k, _fmt(getattr(self, k, None))) for k in keys)


def _fmt(v, spec="%.2f"):
    return "-" if v is None else spec % v


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def self_cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------------------
# Images for the "many" part: bench.py's layout format, N layers, own seed
# ---------------------------------------------------------------------------

def build_image(path, layer_sizes, seed):
    """An OCI layout at `path` (cached: built once), like bench.build_layout's
    but with the given layer payload sizes and a seed of its own."""
    done = os.path.join(path, ".complete")
    if os.path.exists(done):
        return B.Layout(path)
    shutil.rmtree(path, ignore_errors=True)
    blob_dir = os.path.join(path, "blobs", "sha256")
    os.makedirs(blob_dir)

    def put_blob(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(blob_dir, d.split(":", 1)[1]), "wb") as f:
            f.write(data)
        return d

    layers, diff_ids = [], []
    for i, size in enumerate(layer_sizes):
        tmp = os.path.join(blob_dir, ".layer-%d.tmp" % i)
        with open(tmp, "wb") as f:
            gz_hash = B._HashingWriter(f)
            with gzip.GzipFile(fileobj=gz_hash, mode="wb", compresslevel=0, mtime=0) as gz:
                tar_hash = B._HashingWriter(gz)
                with tarfile.open(fileobj=tar_hash, mode="w|", format=tarfile.PAX_FORMAT,
                                  bufsize=1 * MiB) as tar:
                    info = tarfile.TarInfo(name="data/layer-%d.bin" % i)
                    info.size = size
                    info.mtime = 0
                    info.mode = 0o644
                    tar.addfile(info, B._RandomReader("%s-%d" % (seed, i), size))
        digest = "sha256:" + gz_hash.h.hexdigest()
        os.rename(tmp, os.path.join(blob_dir, digest.split(":", 1)[1]))
        layers.append({"mediaType": B.OCI_LAYER_GZIP, "digest": digest, "size": gz_hash.n})
        diff_ids.append("sha256:" + tar_hash.h.hexdigest())
    config = B._canonical({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Labels": {"org.example.bench": seed}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    config_digest = put_blob(config)
    manifest = B._canonical({
        "schemaVersion": 2, "mediaType": B.OCI_MANIFEST,
        "config": {"mediaType": B.OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": layers,
    })
    manifest_digest = put_blob(manifest)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": B.OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": B.REF_NAME}}]}, f)
    open(done, "w").close()
    return B.Layout(path)


def build_many(cache_root, n, mib, layers):
    root = os.path.join(cache_root, "many-%dx%dMiB-%dL" % (n, mib, layers))
    os.makedirs(root, exist_ok=True)
    per_layer = mib * MiB // layers
    images = []
    for i in range(n):
        path = os.path.join(root, "img-%02d" % i)
        if not os.path.exists(os.path.join(path, ".complete")):
            log("building image %d/%d (%d x %d MiB) in %s" % (i + 1, n, layers,
                                                             per_layer // MiB, path))
        images.append(build_image(path, [per_layer] * layers,
                                  "regd-many-%d-%d-%d" % (mib, layers, i)))
    return root, images


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------

class Certs:
    """A CA and a leaf for IP:127.0.0.1 it signed (openssl, EC P-256)."""

    def __init__(self, d):
        os.makedirs(d, exist_ok=True)
        self.ca = certs_mod.make_ca(d, "bench")
        leaf_cert, self.leaf_key = certs_mod.make_leaf(d, "registry", self.ca, "127.0.0.1",
                                                       "IP:127.0.0.1")
        # The registry serves the chain (leaf + CA): the fixture's start-up
        # probe uses the certificate file as its CA file, and Python 3.11's
        # OpenSSL wants the self-signed root in it.
        self.chain = os.path.join(d, "registry-chain.pem")
        with open(self.chain, "w") as out:
            for p in (leaf_cert, self.ca[0]):
                with open(p) as f:
                    out.write(f.read())

    @property
    def ca_cert(self):
        return self.ca[0]


# ---------------------------------------------------------------------------
# The bench
# ---------------------------------------------------------------------------

class PushLimit:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.pb = B.stubs.load().registry_pb2
        self.certs = None
        self.perf_files = []
        self.perf_notes = []

    # -- plumbing ---------------------------------------------------------------
    def new_registry(self, tls=False):
        t = (self.certs.chain, self.certs.leaf_key) if tls else None
        return registry_mod.Registry(workdir=tempfile.mkdtemp(prefix="reg-", dir=self.workdir),
                                     log_level="warn", tls=t).start()

    @staticmethod
    def drop_registry(reg):
        wd = reg.workdir
        reg.stop()
        shutil.rmtree(wd, ignore_errors=True)
        os.sync()

    def cafile(self, reg):
        return self.certs.ca_cert if reg.tls else None

    def new_daemon(self, reg, allowed):
        kw = {}
        if reg.tls:
            cfg = os.path.join(self.workdir, "regd-config-%d.json" % reg.port)
            with open(cfg, "w") as f:
                json.dump({"registries": {reg.host: {"ca_bundle": self.certs.ca_cert}}}, f)
            kw["config"] = cfg
        else:
            kw["insecure_registries"] = [reg.host]
        return daemon_mod.Daemon(self.workdir, allowed_paths=allowed,
                                 extra_args=list(self.args.regd_flag),
                                 rpc_timeout=B.RPC_TIMEOUT, stop_timeout=60, **kw).start()

    @staticmethod
    def stop_daemon(d, label):
        rc = d.stop(check=False)
        if rc != 0:
            log("WARNING: %s: regd exited with %s after SIGTERM" % (label, rc))

    @contextlib.contextmanager
    def perf_attached(self, pid, label):
        """`perf record -g -p PID` around the body; the report goes to a file."""
        if not label:
            yield
            return
        data = os.path.join(self.workdir, "perf-%s.data" % label)
        errf = os.path.join(self.workdir, "perf-%s.err" % label)
        with open(errf, "wb") as err:
            p = subprocess.Popen(["perf", "record", "-g", "-o", data, "-p", str(pid)],
                                 stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        util.track(p)
        time.sleep(1.0)  # perf attaches to every thread before the push starts
        if p.poll() is not None:
            util.untrack(p)
            raise RuntimeError("perf record exited with %s: %s"
                               % (p.returncode, util.read_tail(errf)))
        try:
            yield
        finally:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            util.untrack(p)
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--sort", "dso,sym", "-g", "none"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
        lines = rep.stdout.decode(errors="replace").splitlines()[:self.args.perf_lines]
        out = os.path.join(self.args.perf_dir, "push-limit-perf-%s.txt" % label)
        with open(out, "w") as f:
            f.write("# bench/run.sh --push-limit --perf: part %s, %s UTC\n"
                    % (label, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")))
            f.write("# perf record -g -p <regd> for one push; perf report --stdio "
                    "--no-children --sort dso,sym -g none | head -%d\n"
                    % self.args.perf_lines)
            if rep.returncode != 0:
                f.write("# perf report exited with %d: %s\n"
                        % (rep.returncode, rep.stderr.decode(errors="replace")[-2000:]))
            f.write("\n".join(lines) + "\n")
        os.unlink(data)
        self.perf_files.append(out)
        log("perf report (%s) written to %s" % (label, out))

    def _timed(self, cmd, capture=True):
        """(rc, stdout, stderr, cpu s, maxrss KB) of cmd under /usr/bin/time."""
        return B.run_timed(cmd, self.workdir, capture)

    # -- regd, one image ------------------------------------------------------------
    def regd_push(self, reg, layout, perf_label=None):
        repo = "bench/regd"
        d = self.new_daemon(reg, [layout.path])
        try:
            pid = d.proc.pid
            req = self.pb.PushImageRequest(
                ref="%s/%s:latest" % (reg.host, repo),
                layout=self.pb.OciLayout(path=layout.path, ref_name=B.REF_NAME),
                concurrency=self.args.concurrency)
            with self.perf_attached(pid, perf_label):
                reg_cpu0 = B.proc_cpu_seconds(reg.proc.pid)
                cpu0 = B.proc_cpu_seconds(pid)
                t0 = time.monotonic()
                events, result, retries = 0, None, 0
                for ev in d.stub.PushImage(req, timeout=B.RPC_TIMEOUT):
                    events += 1
                    kind = ev.WhichOneof("event")
                    if kind == "result":
                        result = ev.result
                    elif kind == "retry":
                        retries += 1
                wall = time.monotonic() - t0
                cpu = B.proc_cpu_seconds(pid) - cpu0
                reg_cpu = B.proc_cpu_seconds(reg.proc.pid) - reg_cpu0
            hwm = B.proc_status_kb(pid, "VmHWM")
            threads = B.proc_status_kb(pid, "Threads")
            if result is None:
                raise RuntimeError("regd: PushImage stream ended without a PushResult")
            if result.descriptor.digest != layout.manifest_digest:
                raise RuntimeError("regd: pushed manifest %s, want %s"
                                   % (result.descriptor.digest, layout.manifest_digest))
        finally:
            self.stop_daemon(d, "regd push")
        B.verify_push(reg, repo, layout, self.cafile(reg))
        return Res(wall=wall, cpu=cpu, rss_kb=hwm, registry_cpu=reg_cpu,
                   events=events, retries=retries, threads=threads)

    # -- the sendfile floor -------------------------------------------------------------
    def sendfile_push(self, reg, jobs):
        """jobs: [(repo, layout)]; one sendfile_push.py process for all of them."""
        cmd = [PYTHON, SENDFILE_PUSH, "--registry", reg.host,
               "--threads", str(self.args.concurrency)]
        if reg.tls:
            cmd += ["--tls-ca", self.certs.ca_cert]
        cmd += ["%s=%s" % (repo, lay.path) for repo, lay in jobs]
        reg_cpu0 = B.proc_cpu_seconds(reg.proc.pid)
        t0 = time.monotonic()
        rc, out, err, cpu_total, rss = self._timed(cmd)
        outer = time.monotonic() - t0
        reg_cpu = B.proc_cpu_seconds(reg.proc.pid) - reg_cpu0
        if rc != 0:
            raise RuntimeError("sendfile_push failed (%d): %s"
                               % (rc, err.decode(errors="replace")[-2000:]))
        r = json.loads(out)
        for repo, lay in jobs:
            B.verify_push(reg, repo, lay, self.cafile(reg))
        return Res(wall=r["wall"], cpu=r["cpu"], rss_kb=rss, registry_cpu=reg_cpu,
                   cpu_process=cpu_total, wall_process=outer, bytes=r["bytes"],
                   calls=[j["wall"] for j in r["jobs"]])

    # -- parallel curl -T ---------------------------------------------------------------
    def curl_push(self, reg, layout):
        """bench.py's curl floor, --concurrency blobs at once (like regd and the
        sendfile floor); over TLS with --cacert."""
        repo = "bench/curl"
        tls_args = ["--cacert", self.certs.ca_cert] if reg.tls else []
        reg_cpu0 = B.proc_cpu_seconds(reg.proc.pid)
        wall, usage = B.curl_push(reg, repo, layout, self.workdir, self._timed, tls_args,
                                  parallel=self.args.concurrency)
        reg_cpu = B.proc_cpu_seconds(reg.proc.pid) - reg_cpu0
        B.verify_push(reg, repo, layout, self.cafile(reg))
        return Res(wall=wall, cpu=sum(u[0] for u in usage), rss_kb=max(u[1] for u in usage),
                   registry_cpu=reg_cpu, processes=len(usage),
                   cpu_puts=sum(u[0] for u in usage if u[2]))

    def tls_session(self, reg):
        """The TLS version and cipher curl negotiates with the registry."""
        res = subprocess.run([B.CURL, "-sS", "-v", "--cacert", self.certs.ca_cert,
                              "-o", "/dev/null", reg.url + "/v2/"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
        for line in res.stderr.decode(errors="replace").splitlines():
            if "SSL connection using" in line:
                return line.split("SSL connection using", 1)[1].strip()
        return "unknown"

    # -- many at once ------------------------------------------------------------------
    def regd_many(self, reg, root, images, perf_label=None):
        d = self.new_daemon(reg, [root])
        n = len(images)
        calls = [None] * n
        errors = []
        barrier = threading.Barrier(n + 1)
        try:
            pid = d.proc.pid

            def call(i, lay):
                repo = "bench/many-%02d" % i
                req = self.pb.PushImageRequest(
                    ref="%s/%s:latest" % (reg.host, repo),
                    layout=self.pb.OciLayout(path=lay.path, ref_name=B.REF_NAME),
                    concurrency=self.args.concurrency)
                barrier.wait()
                t0 = time.monotonic()
                try:
                    result = None
                    for ev in d.stub.PushImage(req, timeout=B.RPC_TIMEOUT):
                        if ev.WhichOneof("event") == "result":
                            result = ev.result
                    if result is None:
                        raise RuntimeError("stream ended without a PushResult")
                    if result.descriptor.digest != lay.manifest_digest:
                        raise RuntimeError("pushed manifest %s, want %s"
                                           % (result.descriptor.digest, lay.manifest_digest))
                    calls[i] = time.monotonic() - t0
                except Exception as e:  # noqa: BLE001 (reported below)
                    msg = ("%s: %s" % (e.code().name, e.details())
                           if hasattr(e, "code") else str(e))
                    errors.append("%s: %s" % (repo, msg))

            threads = [threading.Thread(target=call, args=(i, lay))
                       for i, lay in enumerate(images)]
            for t in threads:
                t.start()
            with self.perf_attached(pid, perf_label), B.Sampler(pid, SAMPLE_S) as smp:
                reg_cpu0 = B.proc_cpu_seconds(reg.proc.pid)
                cpu0 = B.proc_cpu_seconds(pid)
                me0 = self_cpu()
                barrier.wait()
                t0 = time.monotonic()
                for t in threads:
                    t.join()
                wall = time.monotonic() - t0
                cpu = B.proc_cpu_seconds(pid) - cpu0
                caller_cpu = self_cpu() - me0
                reg_cpu = B.proc_cpu_seconds(reg.proc.pid) - reg_cpu0
            hwm = B.proc_status_kb(pid, "VmHWM")
        finally:
            self.stop_daemon(d, "regd many")
        if errors:
            raise RuntimeError("regd many: %d of %d calls failed; first: %s"
                               % (len(errors), n, errors[0]))
        for i, lay in enumerate(images):
            B.verify_push(reg, "bench/many-%02d" % i, lay)
        total = sum(lay.total_size for lay in images)
        return Res(wall=wall, cpu=cpu, rss_kb=hwm, registry_cpu=reg_cpu, bytes=total,
                   calls=calls, threads=smp.threads, rss_sampled_kb=smp.rss_kb,
                   caller_cpu=caller_cpu)

    def sendfile_many(self, reg, images):
        return self.sendfile_push(reg, [("bench/many-%02d" % i, lay)
                                        for i, lay in enumerate(images)])

    # -- parts ----------------------------------------------------------------------------
    def _loop(self, label, methods, warm, make_reg):
        per = {name: [] for name, _ in methods}
        for i in range(self.args.warmup):
            reg = make_reg()
            try:
                warm(reg)
            finally:
                self.drop_registry(reg)
            log("%s: warm-up push %d/%d done" % (label, i + 1, self.args.warmup))
        for i in range(self.args.runs if label != "many" else self.args.concurrent_runs):
            for name, fn in methods:
                reg = make_reg()
                try:
                    os.sync()
                    r = fn(reg)
                finally:
                    self.drop_registry(reg)
                per[name].append(r)
                log("%s: run %d %-8s %r" % (label, i + 1, name, r))
        return per

    def part_plain(self, layout):
        methods = (("regd", lambda reg: self.regd_push(reg, layout)),
                   ("sendfile", lambda reg: self.sendfile_push(reg, [("bench/sendfile",
                                                                      layout)])),
                   ("curl", lambda reg: self.curl_push(reg, layout)))
        per = self._loop("plain", methods, lambda reg: self.curl_push(reg, layout),
                         self.new_registry)
        if self.args.perf:
            self._perf_run("plain", lambda reg: self.regd_push(reg, layout, "plain"),
                           self.new_registry)
        return per

    def part_tls(self, layout):
        reg = self.new_registry(tls=True)
        try:
            session = self.tls_session(reg)
        finally:
            self.drop_registry(reg)
        methods = (("regd", lambda reg: self.regd_push(reg, layout)),
                   ("curl", lambda reg: self.curl_push(reg, layout)),
                   ("pyssl", lambda reg: self.sendfile_push(reg, [("bench/pyssl", layout)])))
        per = self._loop("tls", methods, lambda reg: self.curl_push(reg, layout),
                         lambda: self.new_registry(tls=True))
        if self.args.perf:
            self._perf_run("tls", lambda reg: self.regd_push(reg, layout, "tls"),
                           lambda: self.new_registry(tls=True))
        return per, session

    def part_many(self, root, images):
        methods = (("regd", lambda reg: self.regd_many(reg, root, images)),
                   ("sendfile", lambda reg: self.sendfile_many(reg, images)))
        # The warm-up: one image with the sendfile floor.
        per = self._loop("many", methods, lambda reg: self.sendfile_push(
            reg, [("bench/warm", images[0])]), self.new_registry)
        if self.args.perf:
            self._perf_run("many", lambda reg: self.regd_many(reg, root, images, "many"),
                           self.new_registry)
        return per

    def _perf_run(self, label, fn, make_reg):
        reg = make_reg()
        try:
            os.sync()
            r = fn(reg)
        except Exception as e:  # noqa: BLE001 (perf is an extra, not the measurement)
            log("WARNING: perf run %s failed: %s" % (label, e))
            self.perf_notes.append("perf run %s failed: %s" % (label, e))
            return
        finally:
            self.drop_registry(reg)
        self.perf_notes.append("perf run %s (regd under perf, not in the tables): %r"
                               % (label, r))


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def med(rs, key):
    vals = [getattr(r, key, None) for r in rs]
    if not vals or any(v is None for v in vals):
        return None
    return statistics.median(vals)


def ratio(a, b):
    if a is None or b is None:
        return None
    return a / b if b > 0 else float("inf")


def verdict(ok):
    return "PASS" if ok else "FAIL"


def _per_gib(cpu, size):
    return None if cpu is None else cpu / (size / float(GiB))


def render_single(L, title, per, names, labels, size, targets, runs):
    add = L.append
    add(title)
    add("")
    add("| method | wall s | CPU s | CPU s per GiB | peak RSS MiB | registry CPU s |")
    add("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        rs = per[name]
        add("| %s | %s | %s | %s | %s | %s |" % (
            labels[name], _fmt(med(rs, "wall")), _fmt(med(rs, "cpu")),
            _fmt(_per_gib(med(rs, "cpu"), size)), _fmt(med(rs, "rss_kb") / 1024.0, "%.1f"),
            _fmt(med(rs, "registry_cpu"))))
    add("")
    add("| target | measured | result |")
    add("| --- | ---: | :---: |")
    for label, val, limit in targets:
        add("| %s | %s | %s |" % (label, _fmt(val, "%.2f x"),
                                  "-" if limit is None else verdict(val <= limit)))
    add("")
    add("Per run (wall s / CPU s / registry CPU s):")
    add("")
    add("| run | %s |" % " | ".join(labels[n] for n in names))
    add("| ---: | %s |" % " | ".join("---" for _ in names))
    for i in range(runs):
        cells = []
        for n in names:
            r = per[n][i]
            c = "%.2f / %.2f / %.2f" % (r.wall, r.cpu, r.registry_cpu)
            if hasattr(r, "cpu_process"):
                c += " (process: %.2f s wall, %.2f s CPU)" % (r.wall_process, r.cpu_process)
            if hasattr(r, "cpu_puts"):
                c += " (%d processes; the blob PUTs %.2f s CPU)" % (r.processes, r.cpu_puts)
            cells.append(c)
        add("| %d | %s |" % (i + 1, " | ".join(cells)))
    add("")


def fairness(calls):
    return max(calls) / statistics.median(calls)


def render(args, layout, plain, tls, many, notes):
    L = []
    add = L.append
    if layout is not None:
        size = layout.total_size
        add("Image (plain, tls): %d blobs, %.1f MiB (%d layers x %.1f MiB + config); "
            "PushImage concurrency %d, the floors %d blobs at once; median of %d run(s)."
            % (len(layout.blobs), size / MiB, B.N_LAYERS, layout.layers[0]["size"] / MiB,
               args.concurrency, args.concurrency, args.runs))
        add("")
    if plain is not None:
        labels = {"regd": "regd PushImage", "sendfile": "sendfile floor (Python, os.sendfile)",
                  "curl": "curl -T (parallel)"}
        rg, sf, cu = (plain[n] for n in ("regd", "sendfile", "curl"))
        targets = [
            ("plain: regd CPU <= %.2g x sendfile" % TARGET_PLAIN_CPU,
             ratio(med(rg, "cpu"), med(sf, "cpu")), TARGET_PLAIN_CPU),
            ("plain: regd wall <= %.2f x sendfile" % TARGET_PLAIN_WALL,
             ratio(med(rg, "wall"), med(sf, "wall")), TARGET_PLAIN_WALL),
            ("(reference) plain: regd CPU / curl", ratio(med(rg, "cpu"), med(cu, "cpu")), None),
            ("(reference) plain: regd wall / curl", ratio(med(rg, "wall"), med(cu, "wall")),
             None),
        ]
        render_single(L, "**Plain HTTP**", plain, ("regd", "sendfile", "curl"), labels,
                      size, targets, args.runs)
    if tls is not None:
        per, session = tls
        labels = {"regd": "regd PushImage (TLS)", "curl": "curl -T --cacert (parallel)",
                  "pyssl": "(reference) Python ssl, 1 MiB sendall"}
        rg, cu, py = per["regd"], per["curl"], per["pyssl"]
        targets = [
            ("TLS: regd CPU <= %.2g x curl" % TARGET_TLS_CPU,
             ratio(med(rg, "cpu"), med(cu, "cpu")), TARGET_TLS_CPU),
            ("TLS: regd wall <= %.2f x curl" % TARGET_TLS_WALL,
             ratio(med(rg, "wall"), med(cu, "wall")), TARGET_TLS_WALL),
            ("(reference) TLS: regd CPU / Python ssl", ratio(med(rg, "cpu"), med(py, "cpu")),
             None),
            ("(reference) TLS: regd wall / Python ssl",
             ratio(med(rg, "wall"), med(py, "wall")), None),
        ]
        render_single(L, "**TLS** (curl negotiated: %s)" % session, per,
                      ("regd", "curl", "pyssl"), labels, size, targets, args.runs)
    if many is not None:
        per, images = many
        n = len(images)
        total = sum(lay.total_size for lay in images)
        add("**Many at once**: %d concurrent pushes of distinct images, %.1f MiB each "
            "(%d layer(s) + config), %.1f MiB in all, to one plain-HTTP registry; "
            "median of %d run(s) (peak RSS and threads: the worst run)."
            % (n, images[0].total_size / MiB, args.concurrent_layers, total / MiB,
               args.concurrent_runs))
        add("")
        add("| method | wall s | aggregate MiB/s | CPU s | CPU s per GiB | peak RSS MiB | "
            "peak threads | push time min / median / max s | slowest / median | "
            "registry CPU s |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
        labels = {"regd": "regd: %d PushImage calls, one daemon" % n,
                  "sendfile": "sendfile floor: %d pushes, one process" % n}
        agg = {}
        for name in ("regd", "sendfile"):
            rs = per[name]
            agg[name] = statistics.median(r.bytes / r.wall / MiB for r in rs)
            fair = statistics.median(fairness(r.calls) for r in rs)
            mid = sorted(rs, key=lambda r: r.wall)[len(rs) // 2]
            rss = max(r.rss_kb for r in rs) / 1024.0
            thr = max(getattr(r, "threads", 0) for r in rs)
            add("| %s | %s | %.0f | %s | %s | %.1f | %s | %.2f / %.2f / %.2f | %.2f | %s |" % (
                labels[name], _fmt(med(rs, "wall")), agg[name], _fmt(med(rs, "cpu")),
                _fmt(_per_gib(med(rs, "cpu"), total)), rss,
                str(thr) if name == "regd" else "-",
                min(mid.calls), statistics.median(mid.calls), max(mid.calls), fair,
                _fmt(med(rs, "registry_cpu"))))
        add("")
        rg = per["regd"]
        worst_rss = max(r.rss_kb for r in rg) / 1024.0
        worst_fair = max(fairness(r.calls) for r in rg)
        add("| target | measured | result |")
        add("| --- | ---: | :---: |")
        a = ratio(agg["regd"], agg["sendfile"])
        add("| many: regd aggregate >= %.1f x sendfile | %.2f x | %s |"
            % (TARGET_MANY_AGG, a, verdict(a >= TARGET_MANY_AGG)))
        add("| many: regd peak RSS < %.0f MiB (worst run) | %.1f MiB | %s |"
            % (TARGET_MANY_RSS, worst_rss, verdict(worst_rss < TARGET_MANY_RSS)))
        add("| many: regd slowest <= %.1f x median (worst run) | %.2f x | %s |"
            % (TARGET_MANY_FAIR, worst_fair, verdict(worst_fair <= TARGET_MANY_FAIR)))
        add("")
        add("Per run (wall s / aggregate MiB/s / CPU s / peak RSS MiB / slowest÷median):")
        add("")
        add("| run | regd | sendfile |")
        add("| ---: | --- | --- |")
        for i in range(args.concurrent_runs):
            cells = []
            for name in ("regd", "sendfile"):
                r = per[name][i]
                cells.append("%.2f / %.0f / %.2f / %.1f / %.2f" % (
                    r.wall, r.bytes / r.wall / MiB, r.cpu, r.rss_kb / 1024.0,
                    fairness(r.calls)))
            add("| %d | %s |" % (i + 1, " | ".join(cells)))
        add("")
        add("The regd calls are made from the bench process (one thread per call, one "
            "channel); its CPU during the regd runs (the callers' share of the 2 cores): "
            "%s s. The sendfile row's RSS is its process's (/usr/bin/time)."
            % " / ".join("%.2f" % r.caller_cpu for r in rg))
        add("")
    for n in notes:
        add(n)
    return "\n".join(L).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="regd push at the physical limit (issue 10)")
    p.add_argument("--parts", default="plain,tls,many",
                   help="which parts: plain, tls, many (default all three)")
    p.add_argument("--size-mib", type=int, default=1024,
                   help="plain, tls: payload in MiB, split over 4 layers (default 1024)")
    p.add_argument("--runs", type=int, default=3,
                   help="plain, tls: runs per method; the median is reported (default 3)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed floor pushes before each part (default 1)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="PushImage concurrency, and blobs at once in the floors (default 4)")
    p.add_argument("--concurrent", type=int, default=16,
                   help="many: pushes at once (default 16)")
    p.add_argument("--concurrent-mib", type=int, default=256,
                   help="many: payload per image in MiB (default 256)")
    p.add_argument("--concurrent-layers", type=int, default=1,
                   help="many: layers per image (default 1)")
    p.add_argument("--concurrent-runs", type=int, default=2,
                   help="many: runs per method (default 2)")
    p.add_argument("--regd-flag", action="append", default=[],
                   help="an extra regd flag for every daemon, e.g. "
                   "--regd-flag=--registry_concurrency=16 (repeatable)")
    p.add_argument("--perf", action="store_true",
                   help="one more regd push per part under `perf record -g -p PID`; "
                   "the report's head goes to DIR/push-limit-perf-PART.txt")
    p.add_argument("--perf-dir", help="where the perf reports go (default: the directory "
                   "of --out, else the current directory)")
    p.add_argument("--perf-lines", type=int, default=40,
                   help="lines of perf report kept (default 40)")
    p.add_argument("--out", help="also write the tables (markdown) to this file")
    a = p.parse_args(argv)
    a.parts = [x.strip() for x in a.parts.split(",") if x.strip()]
    if not a.parts or not set(a.parts) <= {"plain", "tls", "many"}:
        p.error("--parts is a comma list of plain, tls, many")
    if (a.size_mib < B.N_LAYERS or a.runs < 1 or a.concurrency < 1 or a.concurrent < 1
            or a.concurrent_layers < 1 or a.concurrent_mib < a.concurrent_layers
            or a.concurrent_runs < 1 or a.warmup < 0):
        p.error("--size-mib >= 4, --concurrent-mib >= --concurrent-layers >= 1, "
                "--runs, --concurrent-runs, --concurrency, --concurrent >= 1")
    if a.perf_dir is None:
        a.perf_dir = os.path.dirname(os.path.abspath(a.out)) if a.out else os.getcwd()
    return a


def main(argv):
    args = parse_args(argv)
    B.exit_cleanly_on_signals()
    missing = [t for t in (paths.REGISTRY_BIN, B.TIME_BIN, paths.regd_bin(), PYTHON)
               if not os.access(t, os.X_OK)]
    tools = [paths.SKOPEO, B.CURL, "openssl"] + (["perf"] if args.perf else [])
    missing += [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.exit("bench: missing %s (apt-get install docker-registry skopeo curl openssl "
                 "time linux-perf; build regd or set REGD_BIN)" % ", ".join(missing))
    cache_root = os.environ.get("BENCH_DIR") or os.path.join(tempfile.gettempdir(),
                                                             "regd-bench-cache")
    os.makedirs(cache_root, exist_ok=True)
    if args.perf:
        os.makedirs(args.perf_dir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="push-limit-", dir=cache_root)
    try:
        src_bin = paths.regd_bin()
        bin_copy = os.path.join(workdir, "regd")
        shutil.copy2(src_bin, bin_copy)
        with open(bin_copy, "rb") as f:
            bin_sha = hashlib.sha256(f.read()).hexdigest()[:12]
        os.environ["REGD_BIN"] = bin_copy
        head = ("regd binary: %s (mtime %s UTC, sha256 %s...)%s. Load average at the start: %s"
                % (src_bin, datetime.datetime.utcfromtimestamp(os.path.getmtime(src_bin))
                   .strftime("%Y-%m-%d %H:%M"), bin_sha,
                   (", flags " + " ".join(args.regd_flag)) if args.regd_flag else "",
                   loadavg()))
        bench = PushLimit(args, workdir)
        layout = None
        if "plain" in args.parts or "tls" in args.parts:
            layout = B.build_layout(cache_root, args.size_mib)
            layout.warm()
        if "tls" in args.parts:
            bench.certs = Certs(os.path.join(workdir, "certs"))
        many_in = None
        if "many" in args.parts:
            many_in = build_many(cache_root, args.concurrent, args.concurrent_mib,
                                 args.concurrent_layers)
            for lay in many_in[1]:
                lay.warm()
        plain = bench.part_plain(layout) if "plain" in args.parts else None
        tls = bench.part_tls(layout) if "tls" in args.parts else None
        many = (bench.part_many(*many_in), many_in[1]) if many_in else None
        notes = [head + "; at the end: %s." % loadavg()]
        notes += bench.perf_notes
        if bench.perf_files:
            notes.append("perf reports: %s" % ", ".join(bench.perf_files))
        text = render(args, layout, plain, tls, many, notes)
        sys.stdout.write(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write("<!-- bench/run.sh --push-limit %s, %s UTC -->\n\n" % (
                    " ".join(argv), datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")))
                f.write(text)
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
