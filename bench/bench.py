#!/usr/bin/python3
"""Push benchmark: regd vs skopeo vs plain curl, plus a shared-upload check.

    bench/run.sh [--size-mib 1024] [--runs 3] [--warmup 1] [--out FILE] [--skip-shared]

Pushes one OCI image layout (4 equal layers of random bytes, each wrapped as a
real tar+gzip at gzip level 0, so the blob is ~ the random payload) to a fresh
docker-registry on loopback, three ways:

  regd    a fresh daemon per run; PushImage(OciLayout, concurrency 4), stream
          drained. Wall = the call; CPU = utime+stime of the daemon from
          /proc/PID/stat before/after; peak RSS = VmHWM after the push.
  skopeo  `skopeo copy --dest-tls-verify=false --preserve-digests oci:... docker://...`
          under /usr/bin/time -f "%e %U %S %M".
  curl    the floor: per blob a POST for the upload URL, then one streamed
          monolithic PUT (`curl -T FILE`; all blobs in parallel), then the
          manifest PUT. CPU is summed and RSS maxed over every curl process
          (each run under /usr/bin/time).

Each method gets a new registry (and storage dir) per run; one untimed curl
push warms up first (--warmup); the methods are interleaved run by run, and
dirty page-cache data is flushed (sync) between pushes, outside the timed
part. Every push is verified: the manifest read back with `skopeo inspect
--raw` must equal the layout's manifest bytes, and every blob must answer HEAD
with its size.

Then a shared-upload check: 8 concurrent WriteLayer calls of the same layer
file to one repo, through a byte-counting TCP proxy between regd and the
registry; it reports the bytes that crossed the wire against the blob size,
wall time and the outcome counts.

Only stdlib + grpc + protobuf; run with /usr/bin/python3. The layout is built
once and cached under $BENCH_DIR (default: $TMPDIR/regd-bench-cache); every
other temp file is removed on exit.
"""

import argparse
import datetime
import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)

import grpc  # noqa: E402

from fixtures import daemon as daemon_mod  # noqa: E402
from fixtures import paths  # noqa: E402
from fixtures import registry as registry_mod  # noqa: E402
from fixtures import stubs  # noqa: E402
from fixtures import util  # noqa: E402

import proxy as proxy_mod  # noqa: E402

MiB = 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "bench"
N_LAYERS = 4
TIME_BIN = "/usr/bin/time"
CURL = os.environ.get("CURL", "curl")
CLK_TCK = os.sysconf("SC_CLK_TCK")
RPC_TIMEOUT = 3600


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# The image layout
# ---------------------------------------------------------------------------

class _HashingWriter:
    """A write-only file that hashes what passes through to `f`."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        if self.f is not None:
            self.f.write(b)
        return len(b)

    def flush(self):
        if self.f is not None:
            self.f.flush()


class _RandomReader:
    def __init__(self, seed, size):
        self.rng = random.Random(seed)
        self.left = size

    def read(self, n=-1):
        if n is None or n < 0 or n > self.left:
            n = self.left
        self.left -= n
        return self.rng.randbytes(n) if n else b""


def _canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


class Layout:
    """A cached OCI image layout on disk and what is in it."""

    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "index.json")) as f:
            index = json.load(f)
        desc = index["manifests"][0]
        self.manifest_digest = desc["digest"]
        self.manifest_bytes = self._read_blob(desc["digest"])
        m = json.loads(self.manifest_bytes)
        self.config = m["config"]
        self.layers = m["layers"]
        self.blobs = [self.config] + self.layers  # descriptors (dicts)

    def blob_path(self, digest):
        return os.path.join(self.path, "blobs", "sha256", digest.split(":", 1)[1])

    def _read_blob(self, digest):
        with open(self.blob_path(digest), "rb") as f:
            return f.read()

    @property
    def total_size(self):
        return sum(b["size"] for b in self.blobs)

    def warm(self):
        """Reads every blob once so each method starts from a warm page cache."""
        for b in self.blobs:
            with open(self.blob_path(b["digest"]), "rb") as f:
                while f.read(8 * MiB):
                    pass


def build_layout(cache_root, size_mib):
    """Returns the cached layout for `size_mib`, building it first if needed."""
    layer_bytes = size_mib * MiB // N_LAYERS
    path = os.path.join(cache_root, "layout-%dMiB" % size_mib)
    done = os.path.join(path, ".complete")
    if os.path.exists(done):
        return Layout(path)
    shutil.rmtree(path, ignore_errors=True)
    blob_dir = os.path.join(path, "blobs", "sha256")
    os.makedirs(blob_dir)
    log("building a %d MiB layout (%d x %d MiB layers) in %s"
        % (size_mib, N_LAYERS, layer_bytes // MiB, path))

    def put_blob(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(blob_dir, d.split(":", 1)[1]), "wb") as f:
            f.write(data)
        return d

    layers, diff_ids = [], []
    for i in range(N_LAYERS):
        tmp = os.path.join(blob_dir, ".layer-%d.tmp" % i)
        with open(tmp, "wb") as f:
            gz_hash = _HashingWriter(f)
            with gzip.GzipFile(fileobj=gz_hash, mode="wb", compresslevel=0, mtime=0) as gz:
                tar_hash = _HashingWriter(gz)
                with tarfile.open(fileobj=tar_hash, mode="w|", format=tarfile.PAX_FORMAT,
                                  bufsize=1 * MiB) as tar:
                    info = tarfile.TarInfo(name="data/layer-%d.bin" % i)
                    info.size = layer_bytes
                    info.mtime = 0
                    info.mode = 0o644
                    tar.addfile(info, _RandomReader("regd-bench-%d-%d" % (size_mib, i),
                                                    layer_bytes))
        digest = "sha256:" + gz_hash.h.hexdigest()
        os.rename(tmp, os.path.join(blob_dir, digest.split(":", 1)[1]))
        layers.append({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": gz_hash.n})
        diff_ids.append("sha256:" + tar_hash.h.hexdigest())
    config = _canonical({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Labels": {"org.example.bench": "regd"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    config_digest = put_blob(config)
    manifest = _canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": layers,
    })
    manifest_digest = put_blob(manifest)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": REF_NAME}}]}, f)
    open(done, "w").close()
    return Layout(path)


# ---------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------

def proc_cpu_seconds(pid):
    """utime+stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class Result:
    def __init__(self, wall, cpu, rss_kb, registry_cpu=None, extra=None):
        self.wall = wall
        self.cpu = cpu
        self.rss_kb = rss_kb
        self.registry_cpu = registry_cpu
        self.extra = extra or {}

    def __repr__(self):
        return "wall %.2fs cpu %.2fs rss %.1fMiB registry-cpu %s" % (
            self.wall, self.cpu, self.rss_kb / 1024.0,
            "-" if self.registry_cpu is None else "%.2fs" % self.registry_cpu)


def verify_push(reg, repo, layout, cafile=None):
    """Fails unless the registry serves the layout's manifest and every blob
    (`cafile`: the CA of a TLS registry)."""
    ref = "%s/%s:latest" % (reg.host, repo)
    res = subprocess.run([paths.SKOPEO, "inspect", "--raw", "--tls-verify=false",
                          "--no-creds", "docker://" + ref],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if res.returncode != 0:
        raise RuntimeError("verify %s: skopeo inspect failed: %s"
                           % (ref, res.stderr.decode(errors="replace")))
    if res.stdout != layout.manifest_bytes:
        got = "sha256:" + hashlib.sha256(res.stdout).hexdigest()
        raise RuntimeError("verify %s: manifest is %s (%d bytes), want the layout's %s"
                           % (ref, got, len(res.stdout), layout.manifest_digest))
    for b in layout.blobs:
        status, headers, _ = util.http_get(
            "%s/v2/%s/blobs/%s" % (reg.url, repo, b["digest"]), method="HEAD", timeout=30,
            cafile=cafile)
        length = int(headers.get("Content-Length", "-1")) if headers else -1
        if status != 200 or length != b["size"]:
            raise RuntimeError("verify %s: blob %s: HEAD %s, length %s, want 200, %d"
                               % (ref, b["digest"], status, length, b["size"]))


def curl_push(reg, repo, layout, workdir, timed, extra_args=(), parallel=None):
    """The curl floor: per blob a `curl` POST for an upload URL, then `curl -T`
    (a streamed monolithic PUT), `parallel` blobs at once (None: all), then the
    manifest PUT. `timed(cmd, capture)` runs a command and returns (exit code,
    stdout, stderr, cpu s, maxrss KB), as run_timed does. Returns (wall s,
    [(cpu s, maxrss KB, was a blob PUT)] per curl process)."""
    usage, errors = [], []
    lock = threading.Lock()

    def curl(args, capture=False):
        cmd = [CURL, "-sS", "--fail-with-body", "-H", "Expect:"] + list(extra_args) + args
        rc, out, err, cpu, rss = timed(cmd, capture)
        with lock:
            usage.append((cpu, rss, "-T" in args))
        if rc != 0:
            raise RuntimeError("curl %s failed (%d): %s"
                               % (" ".join(args), rc, err.decode(errors="replace")))
        return out

    sem = threading.Semaphore(parallel or len(layout.blobs) or 1)

    def upload(b):
        try:
            with sem:
                hdrs = curl(["-X", "POST", "-D", "-", "-o", "/dev/null",
                             "%s/v2/%s/blobs/uploads/" % (reg.url, repo)], capture=True)
                loc = None
                for line in hdrs.decode("latin-1").splitlines():
                    if line.lower().startswith("location:"):
                        loc = line.split(":", 1)[1].strip()
                if not loc:
                    raise RuntimeError("no Location in POST answer:\n%s" % hdrs.decode())
                if loc.startswith("/"):
                    loc = reg.url + loc
                sep = "&" if "?" in loc else "?"
                # -T streams the file; --data-binary @file would read it all into memory.
                curl(["-X", "PUT", "-H", "Content-Type: application/octet-stream",
                      "-T", layout.blob_path(b["digest"]),
                      "%s%sdigest=%s" % (loc, sep, b["digest"])])
        except BaseException as e:  # noqa: BLE001 (reported below)
            with lock:
                errors.append(e)

    t0 = time.monotonic()
    threads = [threading.Thread(target=upload, args=(b,)) for b in layout.blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("curl push: %s" % errors[0])
    mpath = os.path.join(workdir, "manifest.json")
    with open(mpath, "wb") as f:
        f.write(layout.manifest_bytes)
    curl(["-X", "PUT", "-H", "Content-Type: " + OCI_MANIFEST,
          "--data-binary", "@" + mpath,
          "%s/v2/%s/manifests/latest" % (reg.url, repo)])
    return time.monotonic() - t0, usage


class Sampler:
    """Polls a process's VmRSS and Threads every `interval` seconds (maxima)."""

    def __init__(self, pid, interval=0.05):
        self.pid = pid
        self.interval = interval
        self.rss_kb = 0
        self.threads = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.rss_kb = max(self.rss_kb, int(line.split()[1]))
                    elif line.startswith("Threads:"):
                        self.threads = max(self.threads, int(line.split()[1]))
        except OSError:
            pass

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._sample()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self._sample()


def _interrupt(signum, frame):
    raise KeyboardInterrupt()


def exit_cleanly_on_signals():
    """SIGTERM and SIGHUP unwind like ^C, so every temp dir and child goes."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


_timed_counter = iter(range(1, 1 << 62))
_timed_lock = threading.Lock()


def run_timed(cmd, workdir, capture=False):
    """Runs cmd under /usr/bin/time; returns (exit code, stdout, stderr, cpu s, maxrss KB).

    Not os.wait4 on the child itself: a child that Python vforks and execs
    inherits the parent's RSS high-water mark in ru_maxrss (Linux keeps the
    pre-exec mm's peak), so it would report this script's ~45 MiB. time(1) is
    small, and the process it forks starts from that.
    """
    with _timed_lock:
        n = next(_timed_counter)
    tfile = os.path.join(workdir, "time-%d.txt" % n)
    res = subprocess.run([TIME_BIN, "-f", "%U %S %M", "-o", tfile] + list(cmd),
                         stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                         stderr=subprocess.PIPE, timeout=RPC_TIMEOUT)
    with open(tfile) as f:
        u, s, m = f.read().split()[-3:]
    os.unlink(tfile)
    return res.returncode, res.stdout or b"", res.stderr, float(u) + float(s), int(m)


# ---------------------------------------------------------------------------
# The three methods
# ---------------------------------------------------------------------------

class Bench:
    def __init__(self, args, layout, workdir):
        self.args = args
        self.layout = layout
        self.workdir = workdir
        self.stubs = stubs.load()
        self.pb = self.stubs.registry_pb2

    def new_registry(self):
        return registry_mod.Registry(workdir=tempfile.mkdtemp(prefix="reg-", dir=self.workdir),
                                     log_level="warn").start()

    def drop_registry(self, reg):
        wd = reg.workdir
        reg.stop()
        shutil.rmtree(wd, ignore_errors=True)
        os.sync()

    def new_daemon(self, reg_host, allowed):
        d = daemon_mod.Daemon(self.workdir, insecure_registries=[reg_host],
                              allowed_paths=allowed, rpc_timeout=RPC_TIMEOUT)
        return d.start()

    def stop_daemon(self, d, label):
        rc = d.stop(check=False)
        if rc != 0:
            log("WARNING: %s: regd exited with %s after SIGTERM" % (label, rc))
        return rc

    # -- regd -------------------------------------------------------------
    def run_regd(self, reg):
        repo = "bench/regd"
        d = self.new_daemon(reg.host, [self.layout.path])
        try:
            pid = d.proc.pid
            rss_idle = proc_status_kb(pid, "VmRSS")
            req = self.pb.PushImageRequest(
                ref="%s/%s:latest" % (reg.host, repo),
                layout=self.pb.OciLayout(path=self.layout.path, ref_name=REF_NAME),
                concurrency=4)
            reg_cpu0 = proc_cpu_seconds(reg.proc.pid)
            cpu0 = proc_cpu_seconds(pid)
            t0 = time.monotonic()
            events, result, retries = 0, None, 0
            for ev in d.stub.PushImage(req, timeout=RPC_TIMEOUT):
                events += 1
                kind = ev.WhichOneof("event")
                if kind == "result":
                    result = ev.result
                elif kind == "retry":
                    retries += 1
            wall = time.monotonic() - t0
            cpu = proc_cpu_seconds(pid) - cpu0
            reg_cpu = proc_cpu_seconds(reg.proc.pid) - reg_cpu0
            hwm = proc_status_kb(pid, "VmHWM")
            if result is None:
                raise RuntimeError("regd: PushImage stream ended without a PushResult")
            if result.descriptor.digest != self.layout.manifest_digest:
                raise RuntimeError("regd: pushed manifest %s, want %s"
                                   % (result.descriptor.digest, self.layout.manifest_digest))
        finally:
            self.stop_daemon(d, "regd push")
        verify_push(reg, repo, self.layout)
        return Result(wall, cpu, hwm, reg_cpu,
                      {"events": events, "retries": retries, "idle_rss_kb": rss_idle})

    # -- skopeo -------------------------------------------------------------
    def run_skopeo(self, reg):
        repo = "bench/skopeo"
        tfile = os.path.join(self.workdir, "skopeo-time.txt")
        cmd = [TIME_BIN, "-f", "%e %U %S %M", "-o", tfile,
               paths.SKOPEO, "copy", "--dest-tls-verify=false", "--preserve-digests",
               "oci:%s:%s" % (self.layout.path, REF_NAME),
               "docker://%s/%s:latest" % (reg.host, repo)]
        reg_cpu0 = proc_cpu_seconds(reg.proc.pid)
        res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             timeout=RPC_TIMEOUT)
        reg_cpu = proc_cpu_seconds(reg.proc.pid) - reg_cpu0
        if res.returncode != 0:
            raise RuntimeError("skopeo copy failed (%d): %s"
                               % (res.returncode, res.stderr.decode(errors="replace")))
        with open(tfile) as f:
            e, u, s, m = f.read().split()[-4:]
        verify_push(reg, repo, self.layout)
        return Result(float(e), float(u) + float(s), int(m), reg_cpu)

    # -- curl -------------------------------------------------------------
    def run_curl(self, reg):
        repo = "bench/curl"
        reg_cpu0 = proc_cpu_seconds(reg.proc.pid)
        wall, usage = curl_push(reg, repo, self.layout, self.workdir,
                                lambda cmd, capture: run_timed(cmd, self.workdir, capture))
        reg_cpu = proc_cpu_seconds(reg.proc.pid) - reg_cpu0
        verify_push(reg, repo, self.layout)
        return Result(wall, sum(u[0] for u in usage), max(u[1] for u in usage), reg_cpu,
                      {"processes": len(usage)})

    # -- shared upload ------------------------------------------------------------
    def run_shared(self, with_digest, callers=8):
        layer = self.layout.layers[0]
        path = self.layout.blob_path(layer["digest"])
        reg = self.new_registry()
        try:
            with proxy_mod.CountingProxy("127.0.0.1", reg.port) as px:
                d = self.new_daemon(px.host, [self.layout.path])
                try:
                    repo = "%s/bench/shared" % px.host
                    src = self.pb.BlobSource(path=path)
                    if with_digest:
                        src.digest = layer["digest"]
                        src.size = layer["size"]
                    req = self.pb.WriteLayerRequest(repo=repo, layer=src)
                    outcomes, errors = [], []
                    lock = threading.Lock()
                    barrier = threading.Barrier(callers)

                    def call():
                        try:
                            barrier.wait()
                            last = None
                            for ev in d.stub.WriteLayer(req, timeout=RPC_TIMEOUT):
                                if ev.WhichOneof("event") == "result":
                                    last = ev.result
                            if last is None:
                                raise RuntimeError("stream ended without a LayerResult")
                            if last.descriptor.digest != layer["digest"]:
                                raise RuntimeError("result digest %s, want %s"
                                                   % (last.descriptor.digest, layer["digest"]))
                            name = self.pb.LayerResult.Outcome.Name(last.outcome)
                            with lock:
                                outcomes.append(name)
                        except grpc.RpcError as e:
                            with lock:
                                errors.append("%s: %s" % (e.code().name, e.details()))
                        except Exception as e:  # noqa: BLE001
                            with lock:
                                errors.append(str(e))

                    cpu0 = proc_cpu_seconds(d.proc.pid)
                    t0 = time.monotonic()
                    threads = [threading.Thread(target=call) for _ in range(callers)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    wall = time.monotonic() - t0
                    cpu = proc_cpu_seconds(d.proc.pid) - cpu0
                    hwm = proc_status_kb(d.proc.pid, "VmHWM")
                finally:
                    self.stop_daemon(d, "shared upload")
                status, headers, _ = util.http_get(
                    "%s/v2/bench/shared/blobs/%s" % (reg.url, layer["digest"]),
                    method="HEAD", timeout=30)
                present = status == 200 and int(headers.get("Content-Length", -1)) == layer["size"]
                counts = {}
                for o in outcomes:
                    counts[o] = counts.get(o, 0) + 1
                return {
                    "with_digest": with_digest, "callers": callers, "blob_size": layer["size"],
                    "up_bytes": px.up_bytes, "down_bytes": px.down_bytes,
                    "connections": px.connections, "wall": wall, "cpu": cpu, "rss_kb": hwm,
                    "outcomes": counts, "errors": errors, "present": present,
                }
        finally:
            self.drop_registry(reg)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def _fmt(v, nd=2):
    return "-" if v is None else "%.*f" % (nd, v)


def median_result(results):
    return Result(statistics.median(r.wall for r in results),
                  statistics.median(r.cpu for r in results),
                  statistics.median(r.rss_kb for r in results),
                  statistics.median(r.registry_cpu for r in results))


def render(args, layout, per_run, med, shared):
    lines = []
    add = lines.append
    add("Image: %d blobs, %.1f MiB total (%d layers x %.1f MiB + config); "
        "median of %d run(s)." % (len(layout.blobs), layout.total_size / MiB, N_LAYERS,
                                  layout.layers[0]["size"] / MiB, args.runs))
    add("")
    add("| method | wall s | CPU s | peak RSS MiB | registry CPU s |")
    add("| --- | ---: | ---: | ---: | ---: |")
    for name in ("regd", "skopeo", "curl"):
        r = med[name]
        add("| %s | %s | %s | %s | %s |" % (name, _fmt(r.wall), _fmt(r.cpu),
                                             _fmt(r.rss_kb / 1024.0, 1), _fmt(r.registry_cpu)))
    add("")
    rg, sk, cu = med["regd"], med["skopeo"], med["curl"]

    def ratio(a, b):
        return a / b if b > 0 else float("inf")

    add("| ratio | value |")
    add("| --- | ---: |")
    add("| wall regd/skopeo | %.2f |" % ratio(rg.wall, sk.wall))
    add("| wall regd/curl | %.2f |" % ratio(rg.wall, cu.wall))
    add("| CPU regd/skopeo | %.2f |" % ratio(rg.cpu, sk.cpu))
    add("| CPU regd/curl | %.2f |" % ratio(rg.cpu, cu.cpu))
    add("")
    targets = [
        ("regd wall <= 0.6 x skopeo", ratio(rg.wall, sk.wall), 0.6, "%.2f x"),
        ("regd wall <= 1.2 x curl", ratio(rg.wall, cu.wall), 1.2, "%.2f x"),
        ("regd CPU <= 0.15 x skopeo", ratio(rg.cpu, sk.cpu), 0.15, "%.2f x"),
        ("regd peak RSS <= 64 MiB", rg.rss_kb / 1024.0, 64.0, "%.1f MiB"),
    ]
    add("| target | measured | result |")
    add("| --- | ---: | :---: |")
    for label, val, limit, fmt in targets:
        add("| %s | %s | %s |" % (label, fmt % val, "PASS" if val <= limit else "FAIL"))
    add("")
    add("Per run (wall s / CPU s / peak RSS MiB):")
    add("")
    add("| run | regd | skopeo | curl |")
    add("| ---: | --- | --- | --- |")
    for i in range(args.runs):
        cells = []
        for name in ("regd", "skopeo", "curl"):
            r = per_run[name][i]
            cells.append("%.2f / %.2f / %.1f" % (r.wall, r.cpu, r.rss_kb / 1024.0))
        add("| %d | %s |" % (i + 1, " | ".join(cells)))
    idle = [r.extra.get("idle_rss_kb") for r in per_run["regd"]]
    add("")
    add("regd RSS right after start (before the push): %.1f MiB."
        % (statistics.median(idle) / 1024.0))
    if shared:
        add("")
        add("Shared upload: %d concurrent WriteLayer calls of one %.1f MiB blob (file path "
            "source) to one repo, through a byte-counting proxy (last row: one call alone, "
            "for comparison):" % (shared[0]["callers"], shared[0]["blob_size"] / MiB))
        add("")
        add("| calls | BlobSource | bytes to registry | x blob size | wall s | regd CPU s | "
            "regd peak RSS MiB | outcomes | errors |")
        add("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
        for s in shared:
            oc = ", ".join("%s %d" % kv for kv in sorted(s["outcomes"].items())) or "-"
            add("| %d | %s | %d | %.2f | %.2f | %.2f | %.1f | %s | %s |" % (
                s["callers"], "path + digest + size" if s["with_digest"] else "path only",
                s["up_bytes"], s["up_bytes"] / float(s["blob_size"]), s["wall"], s["cpu"],
                s["rss_kb"] / 1024.0, oc,
                ("%d: %s" % (len(s["errors"]), s["errors"][0][:120])) if s["errors"]
                else ("none" if s["present"] else "blob missing after the calls")))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="regd push benchmark (regd vs skopeo vs curl)")
    p.add_argument("--size-mib", type=int, default=1024,
                   help="total layer payload in MiB, split over 4 layers (default 1024)")
    p.add_argument("--runs", type=int, default=3, help="runs per method; the median is "
                   "reported (default 3)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed curl pushes before the runs (default 1)")
    p.add_argument("--out", help="also write the table (markdown) to this file")
    p.add_argument("--skip-shared", action="store_true",
                   help="skip the concurrent shared-upload check")
    p.add_argument("--shared-callers", type=int, default=8)
    a = p.parse_args(argv)
    if a.size_mib < N_LAYERS or a.runs < 1:
        p.error("--size-mib must be >= 4 and --runs >= 1")
    return a


def check_tools():
    missing = []
    for tool in (paths.REGISTRY_BIN, TIME_BIN, paths.regd_bin()):
        if not os.access(tool, os.X_OK):
            missing.append(tool)
    for tool in (paths.SKOPEO, CURL):
        if shutil.which(tool) is None:
            missing.append(tool)
    if missing:
        sys.exit("bench: missing tools: %s (apt-get install docker-registry skopeo curl "
                 "time; build regd or set REGD_BIN)" % ", ".join(missing))


def main(argv):
    args = parse_args(argv)
    check_tools()
    cache_root = os.environ.get("BENCH_DIR") or os.path.join(tempfile.gettempdir(),
                                                             "regd-bench-cache")
    os.makedirs(cache_root, exist_ok=True)
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the finally blocks clean up.
    exit_cleanly_on_signals()
    layout = build_layout(cache_root, args.size_mib)
    # The run's scratch (registry storage, daemon dirs) lives beside the cache,
    # so it is on the same disk as the layout.
    workdir = tempfile.mkdtemp(prefix="run-", dir=cache_root)
    try:
        layout.warm()
        bench = Bench(args, layout, workdir)
        methods = (("regd", bench.run_regd), ("skopeo", bench.run_skopeo),
                   ("curl", bench.run_curl))
        per_run = {name: [] for name, _ in methods}
        # Whichever push comes first is slower (registry and kernel warm-up,
        # seen with every method), so untimed curl pushes go first.
        for i in range(args.warmup):
            reg = bench.new_registry()
            try:
                bench.run_curl(reg)
            finally:
                bench.drop_registry(reg)
            log("warm-up push %d/%d done" % (i + 1, args.warmup))
        for i in range(args.runs):
            for name, fn in methods:
                reg = bench.new_registry()
                try:
                    os.sync()
                    r = fn(reg)
                finally:
                    bench.drop_registry(reg)
                per_run[name].append(r)
                log("run %d/%d %-6s %r" % (i + 1, args.runs, name, r))
        med = {name: median_result(rs) for name, rs in per_run.items()}
        shared = []
        if not args.skip_shared:
            # The last row is one caller alone: the baseline for the CPU and
            # wall of N callers that each have to hash the file themselves.
            for with_digest, callers in ((True, args.shared_callers),
                                         (False, args.shared_callers), (False, 1)):
                s = bench.run_shared(with_digest, callers)
                log("shared upload (%d callers, digest given: %s): %s"
                    % (callers, with_digest, s))
                shared.append(s)
        text = render(args, layout, per_run, med, shared)
        sys.stdout.write(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write("<!-- bench/run.sh %s, %s -->\n\n" % (
                    " ".join(argv), datetime.datetime.now().strftime("%Y-%m-%d %H:%M")))
                f.write(text)
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
