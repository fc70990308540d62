#!/usr/bin/python3
"""Integration tests for regd's limits and hardening (issue 6), against the real daemon.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_limits.py [-k name]

One docker-registry 2.8 ("plain", no auth) and a fixtures/fault_proxy.py in front
of it for the tests that need slow uploads. Most tests start a daemon of their own
with the flags they are about (--inline_memory, --shutdown_grace, a listen
address) or under `prlimit` (file descriptors; threads, as an unprivileged uid,
since root ignores RLIMIT_NPROC).

- FIFOs, sockets and devices as layer paths and as OCI layout files are
  INVALID_ARGUMENT at once; the daemon still serves and exits 0 on SIGTERM.
- A symlink race on a middle directory for >= 10 s: 0 escapes.
- PushImage with concurrency 64 under a small RLIMIT_NPROC: no crash.
- PushImage of 1,100 file layers (ImageSpec and OCI layout) under
  RLIMIT_NOFILE=512.
- --inline_memory: 32 concurrent 4 MiB inline WriteLayers are OK or
  RESOURCE_EXHAUSTED; peak RSS (VmHWM) stays bounded.
- Hashing a sparse 20 GiB file stops when the call is cancelled.
- Cancelled and SIGTERMed uploads leave no upload session on the registry.
- A busy TCP port and a live unix socket are refused; a stale socket replaced.

The measured numbers (race calls, VmHWM, timings) are printed at the end.
"""

import ctypes
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import images, paths, stubs, testing, util  # noqa: E402
from fixtures.daemon import Daemon, DaemonError  # noqa: E402
from fixtures.fault_proxy import FaultProxy  # noqa: E402
from fixtures.registry import Registry  # noqa: E402
from fixtures.uploads import (Stream, StreamChecks, head_blob, random_bytes,  # noqa: E402
                              retry_config, sha256, upload_sessions, write_file)

S = stubs.load()
pb = S.registry_pb2
T = 60        # seconds, deadline of a write RPC
T_BAD = 8     # seconds, deadline of an RPC that must fail fast
MiB = 1 << 20
CHUNK = 8 * MiB
# The uid the thread-limit test runs regd as: RLIMIT_NPROC counts every task of
# the real uid, so use one no other process on this machine runs as.
UNPRIVILEGED_UID = 61000 + os.getpid() % 3000

ENV = None
REG = None
PROXY = None
D = None
ALLOWED = None
OUTSIDE = None
NUMBERS = []   # (what, value) printed at the end
_seq = [0]


def uniq(name):
    _seq[0] += 1
    return "%s-%d" % (name, _seq[0])


def note(what, value):
    NUMBERS.append((what, value))
    sys.stderr.write("  [measured] %s: %s\n" % (what, value))


def setUpModule():
    global ENV, REG, PROXY, D, ALLOWED, OUTSIDE
    os.umask(0o022)  # files the unprivileged daemon reads must be world-readable
    ENV = testing.Env(prefix="regd-limits-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    os.chmod(ENV.workdir, 0o755)
    ALLOWED = os.path.join(ENV.workdir, "allowed")
    OUTSIDE = os.path.join(ENV.workdir, "outside")
    os.makedirs(ALLOWED)
    os.makedirs(OUTSIDE)
    REG = ENV.enter(Registry(ENV.workdir, auth="none"), "registry")
    PROXY = ENV.enter(FaultProxy(REG.host))
    D = ENV.enter(Daemon(ENV.workdir, insecure_registries=[REG.host, PROXY.host],
                         allowed_paths=[ALLOWED], extra_args=["--chunk_size=%d" % CHUNK],
                         rpc_timeout=T), "regd")


def tearDownModule():
    if NUMBERS:
        sys.stderr.write("\n===== test_limits measurements =====\n")
        for what, value in NUMBERS:
            sys.stderr.write("  %s: %s\n" % (what, value))


# -- helpers ---------------------------------------------------------------------------------

def retry():
    return retry_config(pb, initial_delay=0.05)


def write_layer(d, repo, layer, timeout=T):
    return Stream(d.stub.WriteLayer(pb.WriteLayerRequest(repo=repo, layer=layer, retry=retry()),
                                    timeout=timeout))


def push_image(d, ref, layout=None, image=None, ref_name="", timeout=T, concurrency=0):
    req = pb.PushImageRequest(ref=ref, retry=retry(), concurrency=concurrency)
    if layout is not None:
        req.layout.CopyFrom(pb.OciLayout(path=layout, ref_name=ref_name))
    else:
        req.image.CopyFrom(image)
    return Stream(d.stub.PushImage(req, timeout=timeout))


def health(target, timeout=5):
    with grpc.insecure_channel(target) as ch:
        stub = S.health_pb2_grpc.HealthStub(ch)
        return stub.Check(S.health_pb2.HealthCheckRequest(service=""), timeout=timeout).status


def proc_status(pid, field):
    """A field of /proc/PID/status as an int (kB for Vm*), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))


def small_image_spec(name, n_layers, layer_dir):
    """An ImageSpec with an inline config and n_layers tiny distinct layer files;
    returns (spec, {digest: size} of every blob, config included)."""
    os.makedirs(layer_dir, exist_ok=True)
    spec = pb.ImageSpec()
    config = images.make_config({"name": name})
    spec.config.CopyFrom(pb.BlobSource(data=config.data))
    digests = {config.digest: config.size}
    for i in range(n_layers):
        data = ("%s layer %d\n" % (name, i)).encode()
        path = write_file(layer_dir, "l%05d" % i, data)
        spec.layers.append(pb.BlobSource(path=path))
        digests[sha256(data)] = len(data)
    return spec, digests


def tiny_layout(path, name, n_layers):
    """An OCI layout with n_layers tiny distinct layers; returns (manifest Blob, all blobs)."""
    layers = [images.Blob(("%s layout layer %d\n" % (name, i)).encode(), images.OCI_LAYER_GZIP)
              for i in range(n_layers)]
    config = images.make_config({"name": name})
    manifest = images.Blob(images.canonical_json({
        "schemaVersion": 2, "mediaType": images.OCI_MANIFEST,
        "config": config.descriptor(), "layers": [l.descriptor() for l in layers]}),
        images.OCI_MANIFEST)
    blobs = [manifest, config] + layers
    images.write_oci_layout(path, manifest, "v1", blobs)
    return manifest, blobs


def manifest_status(repo, tag):
    status, _, _ = util.http_get("%s/v2/%s/manifests/%s" % (REG.url, repo, tag), method="HEAD",
                                 headers={"Accept": images.OCI_MANIFEST})
    return status


class LimitsCase(testing.IntegrationCase, StreamChecks):
    def tearDown(self):
        PROXY.clear_faults()
        # The shared daemon must still serve after whatever the test did.
        self.assertTrue(D.alive(), "regd died:\n" + D.log())
        self.assertEqual(health(D.target), S.health_pb2.HealthCheckResponse.SERVING)

    def start_daemon(self, label, **kw):
        kw.setdefault("insecure_registries", [REG.host, PROXY.host])
        kw.setdefault("rpc_timeout", T)
        d = Daemon(ENV.workdir, **kw)
        ENV.logs.append((label, d.stderr_path))
        d.start()
        self.addCleanup(d.kill)
        return d


# -- 1. FIFOs, sockets and devices ---------------------------------------------------------

class SpecialFilesTest(LimitsCase):
    """A FIFO (no writer ever opens it), a unix socket or a device as a file source
    is INVALID_ARGUMENT at once, never a call that blocks in open() or reads forever."""

    FAST = 2.0

    def expect_fast(self, code, what, fn):
        start = time.monotonic()
        s = fn()
        took = time.monotonic() - start
        self.assertEqual(s.code, code, "%s: want %s within %.0fs, got %s after %.2fs: %s\n%s"
                         % (what, code.name, self.FAST, s.code.name, took, s.details,
                            s.summary()))
        self.assertLess(took, self.FAST, "%s: %s came after %.2fs" % (what, code.name, took))
        return took

    def test_fifo_socket_device_sources(self):
        # --max_concurrent_calls=4: calls stuck in open() would use the slots up.
        d = self.start_daemon("regd-special", allowed_paths=[ALLOWED],
                              extra_args=["--max_concurrent_calls=4", "--shutdown_grace=2s"],
                              stop_timeout=10)
        base = os.path.join(ALLOWED, "special")
        os.makedirs(base)
        fifo = os.path.join(base, "fifo")
        os.mkfifo(fifo)
        sock_path = os.path.join(base, "sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(sock_path)
        sock.listen(4)
        self.addCleanup(sock.close)
        dev_zero = os.path.join(base, "zero")
        os.mknod(dev_zero, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
        dev_null = os.path.join(base, "null")
        os.mknod(dev_null, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        link_zero = os.path.join(base, "zero-link")
        os.symlink("/dev/zero", link_zero)
        repo = "%s/limits/%s" % (REG.host, uniq("special"))
        timings = {}

        def wl(path, **extra):
            return lambda: write_layer(d, repo, pb.BlobSource(path=path, **extra), timeout=T_BAD)

        for name, path in (("fifo", fifo), ("socket", sock_path), ("char device 1,5", dev_zero),
                           ("char device 1,3", dev_null), ("directory", base)):
            with self.subTest(source=name):
                timings[name] = self.expect_fast(grpc.StatusCode.INVALID_ARGUMENT,
                                                 "WriteLayer(%s)" % name, wl(path))
        with self.subTest(source="fifo with digest and size"):
            self.expect_fast(grpc.StatusCode.INVALID_ARGUMENT, "WriteLayer(fifo, digest given)",
                             wl(fifo, digest=sha256(b"x"), size=1))
        with self.subTest(source="symlink to /dev/zero"):
            self.expect_fast(grpc.StatusCode.PERMISSION_DENIED,
                             "WriteLayer(symlink to /dev/zero)", wl(link_zero))

        # ImageSpec: a FIFO as the config and as a layer.
        img = images.build_image(uniq("special-spec"), {"a": "b"}, layer_sizes=(64,))
        ok_layer = write_file(base, "layer.bin", img.layers[0].data)
        for which in ("config", "layer"):
            spec = pb.ImageSpec()
            if which == "config":
                spec.config.CopyFrom(pb.BlobSource(path=fifo))
                spec.layers.append(pb.BlobSource(path=ok_layer))
            else:
                spec.config.CopyFrom(pb.BlobSource(data=img.config.data))
                spec.layers.append(pb.BlobSource(path=ok_layer))
                spec.layers.append(pb.BlobSource(path=fifo))
            with self.subTest(source="ImageSpec %s FIFO" % which):
                self.expect_fast(grpc.StatusCode.INVALID_ARGUMENT, "PushImage(%s FIFO)" % which,
                                 lambda: push_image(d, repo + ":spec", image=spec, timeout=T_BAD))

        # OCI layouts with one file replaced by a FIFO.
        files = {"oci-layout": "oci-layout", "index.json": "index.json",
                 "manifest blob": "blobs/sha256/" + img.manifest.hex,
                 "config blob": "blobs/sha256/" + img.config.hex,
                 "layer blob": "blobs/sha256/" + img.layers[0].hex}
        for name, rel in files.items():
            layout = os.path.join(base, uniq("layout"))
            images.write_oci_layout(layout, img.manifest, "v1", images.all_blobs(img))
            os.remove(os.path.join(layout, rel))
            os.mkfifo(os.path.join(layout, rel))
            with self.subTest(source="layout %s FIFO" % name):
                timings["layout " + name] = self.expect_fast(
                    grpc.StatusCode.INVALID_ARGUMENT, "PushImage(layout, %s is a FIFO)" % name,
                    lambda: push_image(d, repo + ":layout", layout=layout, ref_name="v1",
                                       timeout=T_BAD))
        note("special files: slowest refusal", "%.3fs" % max(timings.values()))

        # Still serving: more calls than --max_concurrent_calls, each an upload.
        for i in range(6):
            data = b"after the special files %d" % i
            s = write_layer(d, repo, pb.BlobSource(path=write_file(base, "ok%d" % i, data)))
            res = self.assertLayerStream(s, len(data), "UPLOADED")
            self.assertEqual(res.descriptor.digest, sha256(data))
        self.assertEqual(health(d.target), S.health_pb2.HealthCheckResponse.SERVING)
        self.assertEqual(manifest_status(repo.split("/", 1)[1], "layout"), 404)
        start = time.monotonic()
        d.stop()  # raises unless exit 0 within stop_timeout
        took = time.monotonic() - start
        note("special files: SIGTERM to exit", "%.2fs" % took)
        self.assertLess(took, 5, "SIGTERM took %.1fs:\n%s" % (took, d.log()))


# -- 2. symlink race ---------------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2():
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


class SymlinkRaceTest(LimitsCase):
    DURATION = 10.5

    def test_swapping_a_middle_directory_never_escapes(self):
        root = os.path.join(ALLOWED, uniq("race"))     # R
        outside = os.path.join(OUTSIDE, uniq("race"))  # O
        inside_data = random_bytes(4096, "race-inside")
        secret = random_bytes(4096, "race-secret")
        write_file(os.path.join(root, "d"), "f", inside_data)
        write_file(os.path.join(outside, "d"), "f", secret)
        os.symlink(os.path.join(outside, "d"), os.path.join(root, "x"))  # R/x -> O/d
        inside_digest, secret_digest = sha256(inside_data), sha256(secret)
        target = os.path.join(root, "d", "f")
        a = os.path.join(root, "d").encode()
        b = os.path.join(root, "x").encode()
        exchange = _renameat2()
        stop = threading.Event()
        swaps = [0]
        swap_error = []

        def swapper():
            # Atomically exchange R/d (the real directory) and R/x (the symlink to
            # O/d): R/d is one, then the other, never missing.
            try:
                while not stop.is_set():
                    if exchange(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE) != 0:
                        raise OSError(ctypes.get_errno(), "renameat2(RENAME_EXCHANGE)")
                    swaps[0] += 1
                    if swaps[0] % 64 == 0:
                        time.sleep(0)
            except BaseException as e:  # noqa: BLE001 - reported by the test
                swap_error.append(e)

        repo = "limits/" + uniq("race")
        full_repo = "%s/%s" % (REG.host, repo)
        results = {}   # outcome -> count
        escapes = []
        calls = 0
        th = threading.Thread(target=swapper, daemon=True)
        th.start()
        deadline = time.monotonic() + self.DURATION
        try:
            while time.monotonic() < deadline:
                s = write_layer(D, full_repo, pb.BlobSource(path=target), timeout=T_BAD)
                calls += 1
                if s.code == grpc.StatusCode.OK:
                    digest = s.events[-1].result.descriptor.digest
                    if digest == secret_digest:
                        escapes.append(s.summary())
                        key = "OK secret"
                    elif digest == inside_digest:
                        key = "OK inside"
                    else:
                        key = "OK other " + digest
                else:
                    key = s.code.name
                results[key] = results.get(key, 0) + 1
        finally:
            stop.set()
            th.join(5)
        note("symlink race: calls in %.1fs" % self.DURATION, calls)
        note("symlink race: swaps", swaps[0])
        note("symlink race: results", results)
        self.assertEqual(swap_error, [])
        self.assertEqual(escapes, [], "%d of %d calls uploaded the file outside the root: %s"
                         % (len(escapes), calls, results))
        self.assertEqual(head_blob(REG.url, repo, secret_digest), 404)
        self.assertFalse(os.path.exists(REG.blob_data_path(secret_digest)),
                         "the registry holds the outside file's bytes")
        unexpected = {k: v for k, v in results.items()
                      if k not in ("OK inside", "PERMISSION_DENIED", "NOT_FOUND")}
        self.assertEqual(unexpected, {}, results)
        # The race really ran: calls saw both states of R/d.
        self.assertGreaterEqual(calls, 20, results)
        self.assertGreater(results.get("OK inside", 0), 0, results)
        self.assertGreater(results.get("PERMISSION_DENIED", 0) + results.get("NOT_FOUND", 0), 0,
                           results)


# -- 3. thread limit -----------------------------------------------------------------------------

class ThreadLimitTest(LimitsCase):
    """regd as an unprivileged uid under a small RLIMIT_NPROC: PushImage with
    concurrency 64 cannot start its workers, and must not abort the process."""

    HEADROOM = 12  # tasks allowed beyond an idle daemon's (64 workers need far more)
    GRACE = 2

    def unprivileged(self, label, nproc=None, **kw):
        prefix = []
        if nproc is not None:
            prefix += ["prlimit", "--nproc=%d" % nproc, "--"]
        prefix += ["setpriv", "--reuid=%d" % UNPRIVILEGED_UID, "--regid=%d" % UNPRIVILEGED_UID,
                   "--clear-groups", "--"]
        kw.setdefault("insecure_registries", [REG.host])
        d = Daemon(ENV.workdir, allowed_paths=[ALLOWED], command_prefix=prefix, rpc_timeout=T,
                   **kw)
        os.makedirs(d.dir)
        os.chown(d.dir, UNPRIVILEGED_UID, UNPRIVILEGED_UID)  # the ready file goes there
        ENV.logs.append((label, d.stderr_path))
        d.start()
        self.addCleanup(d.kill)
        return d

    def test_push_with_concurrency_64_under_rlimit_nproc(self):
        uid_tasks = subprocess.run(["ps", "-L", "-u", str(UNPRIVILEGED_UID), "--no-headers"],
                                   stdout=subprocess.PIPE, text=True).stdout.split("\n")
        self.assertEqual([l for l in uid_tasks if l.strip()], [],
                         "uid %d already runs tasks" % UNPRIVILEGED_UID)
        layer_dir = os.path.join(ALLOWED, uniq("threads"))
        # How many tasks a daemon has after serving a small push.
        probe = self.unprivileged("regd-threads-probe")
        spec0, blobs0 = small_image_spec(uniq("threads-probe"), 4, layer_dir + "-probe")
        s = push_image(probe, "%s/limits/%s:v1" % (REG.host, uniq("threads-probe")), image=spec0,
                       concurrency=2)
        self.assertPushStream(s, blobs0)
        base = proc_status(probe.proc.pid, "Threads")
        probe.stop()
        limit = base + self.HEADROOM
        note("thread limit: threads of an idle daemon", base)
        note("thread limit: RLIMIT_NPROC", limit)

        d = self.unprivileged("regd-threads", nproc=limit, stop_timeout=self.GRACE + 6,
                              extra_args=["--shutdown_grace=%ds" % self.GRACE])
        self.assertEqual(os.stat("/proc/%d" % d.proc.pid).st_uid, UNPRIVILEGED_UID)
        with open("/proc/%d/limits" % d.proc.pid) as f:
            limits = f.read()
        self.assertRegex(limits, r"Max processes\s+%d\s+%d" % (limit, limit), limits)
        spec, blobs = small_image_spec(uniq("threads"), 80, layer_dir)
        repo = "limits/" + uniq("threads")
        start = time.monotonic()
        s = push_image(d, "%s/%s:v1" % (REG.host, repo), image=spec, concurrency=64)
        took = time.monotonic() - start
        threads_after = proc_status(d.proc.pid, "Threads")
        note("thread limit: 80-layer push with concurrency 64",
             "%s in %.2fs (threads after: %s)" % (s.code.name, took, threads_after))
        self.assertTrue(d.alive(), "regd died (exit %s) during the push:\n%s"
                        % (d.proc.poll(), d.log()))
        self.assertIn(s.code, (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED),
                      "%s: %s\n%s" % (s.code.name, s.details, s.summary()))
        if s.code == grpc.StatusCode.OK:
            self.assertPushStream(s, blobs)
            self.assertEqual(manifest_status(repo, "v1"), 200)
        # And the next calls work.
        spec2, blobs2 = small_image_spec(uniq("threads-after"), 3, layer_dir + "-after")
        s2 = push_image(d, "%s/%s:after" % (REG.host, repo), image=spec2, concurrency=2)
        self.assertPushStream(s2, blobs2)
        data = b"thread limit, after"
        s3 = write_layer(d, "%s/%s" % (REG.host, repo), pb.BlobSource(data=data))
        self.assertLayerStream(s3, len(data))
        self.assertTrue(d.alive(), d.log())
        # SIGTERM: exit 0 within the grace period and a few seconds.
        start = time.monotonic()
        d.stop()  # raises unless exit 0 within stop_timeout
        note("thread limit: SIGTERM to exit", "%.2fs" % (time.monotonic() - start))


# -- 4. file descriptors -------------------------------------------------------------------------

class FileDescriptorTest(LimitsCase):
    """1,100 file layers under RLIMIT_NOFILE=512: files are open only while they upload."""

    LAYERS = 1100

    def test_push_1100_file_layers_under_nofile_512(self):
        d = self.start_daemon("regd-nofile", allowed_paths=[ALLOWED],
                              command_prefix=["prlimit", "--nofile=512", "--"])
        with open("/proc/%d/limits" % d.proc.pid) as f:
            limits = f.read()
        self.assertRegex(limits, r"Max open files\s+512\s+512", limits)
        spec, blobs = small_image_spec(uniq("nofile"), self.LAYERS,
                                       os.path.join(ALLOWED, uniq("nofile-layers")))
        repo = "limits/" + uniq("nofile")
        start = time.monotonic()
        s = push_image(d, "%s/%s:spec" % (REG.host, repo), image=spec, concurrency=8,
                       timeout=120)
        note("nofile: 1100-layer ImageSpec push", "%s in %.2fs"
             % (s.code.name, time.monotonic() - start))
        self.assertPushStream(s, blobs)
        self.assertEqual(manifest_status(repo, "spec"), 200)

        layout = os.path.join(ALLOWED, uniq("nofile-layout"))
        manifest, all_blobs = tiny_layout(layout, uniq("nofile-layout"), self.LAYERS)
        start = time.monotonic()
        s = push_image(d, "%s/%s:layout" % (REG.host, repo), layout=layout, ref_name="v1",
                       concurrency=8, timeout=120)
        note("nofile: 1100-layer OCI layout push", "%s in %.2fs"
             % (s.code.name, time.monotonic() - start))
        res, _ = self.assertPushStream(s, {b.digest: b.size for b in all_blobs[1:]})
        self.assertEqual(res.descriptor.digest, manifest.digest)
        self.assertEqual(manifest_status(repo, "layout"), 200)
        self.assertTrue(d.alive(), d.log())
        d.stop()


# -- 5. inline memory budget --------------------------------------------------------------------

class InlineBudgetTest(LimitsCase):
    CALLS = 32
    SIZE = 4 * MiB
    # gRPC's quota (144 MiB, below) + the inline budget (16 MiB) + the daemon
    # itself (~40 MiB, ~60 under ASan).
    MAX_HWM_KB = 240 * 1000

    def batch(self, d, full_repo, datas):
        """WriteLayers of `datas`, all at once; returns their Streams and the time taken."""
        streams = [None] * len(datas)
        barrier = threading.Barrier(len(datas))

        def one(i):
            barrier.wait()
            streams[i] = write_layer(d, full_repo, pb.BlobSource(data=datas[i]))

        threads = [threading.Thread(target=one, args=(i,), daemon=True)
                   for i in range(len(datas))]
        start = time.monotonic()
        for t in threads:
            t.start()
        rss = [0]
        while any(t.is_alive() for t in threads) and time.monotonic() - start < T:
            rss.append(proc_status(d.proc.pid, "VmRSS") or 0)
            time.sleep(0.05)
        for t in threads:
            t.join(T)
        return streams, time.monotonic() - start, max(rss)

    def check_outcomes(self, streams, datas, repo):
        """Each call is OK (the blob is on the registry) or RESOURCE_EXHAUSTED; returns counts."""
        codes = {}
        for i, s in enumerate(streams):
            self.assertIsNotNone(s, "call %d did not finish" % i)
            codes[s.code.name] = codes.get(s.code.name, 0) + 1
            self.assertIn(s.code, (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED),
                          "call %d: %s %s\n%s" % (i, s.code.name, s.details, s.summary()))
            if s.code == grpc.StatusCode.OK:
                res = self.assertLayerStream(s, len(datas[i]))
                self.assertEqual(res.descriptor.digest, sha256(datas[i]))
                self.assertEqual(head_blob(REG.url, repo, sha256(datas[i])), 200)
        return codes

    def test_concurrent_inline_writes_stay_within_the_budget(self):
        proxy = ENV.enter(FaultProxy(REG.host))
        # ~1 s an upload, so that the calls overlap.
        proxy.add_fault("throttle", path=r"/blobs/uploads/", times=None, rate=4 * MiB)
        # gRPC must be able to take in the 32 requests (128 MiB) for regd's own
        # budget to be what refuses them: at a smaller quota gRPC's reclaimer
        # resets streams at random, budget holders included (also
        # RESOURCE_EXHAUSTED, but not what this test is about).
        d = self.start_daemon("regd-inline", insecure_registries=[proxy.host],
                              extra_args=["--inline_memory=%d" % (16 * MiB),
                                          "--grpc_memory=%d" % (144 * MiB)])
        repo = "limits/" + uniq("inline")
        full_repo = "%s/%s" % (proxy.host, repo)
        # How many 4 MiB calls fit at once on a fresh daemon (however regd counts them).
        first = [random_bytes(self.SIZE, "inline-first-%d" % i) for i in range(4)]
        streams, _, _ = self.batch(d, full_repo, first)
        fit = self.check_outcomes(streams, first, repo).get("OK", 0)
        self.assertGreaterEqual(fit, 1, "not even one 4 MiB inline call fits in 16 MiB")
        hwm_before = proc_status(d.proc.pid, "VmHWM")

        datas = [random_bytes(self.SIZE, "inline-%d" % i) for i in range(self.CALLS)]
        streams, took, rss = self.batch(d, full_repo, datas)
        hwm = proc_status(d.proc.pid, "VmHWM")
        codes = self.check_outcomes(streams, datas, repo)
        note("inline budget: 4 x 4 MiB at once with --inline_memory=16MiB", "%d OK" % fit)
        note("inline budget: 32 x 4 MiB at once", "%s in %.2fs" % (codes, took))
        note("inline budget: VmHWM", "%d kB before the 32 calls, %d kB after (VmRSS peak seen "
             "%d kB)" % (hwm_before, hwm, rss))
        self.assertGreaterEqual(codes.get("OK", 0), 1, codes)
        self.assertGreaterEqual(codes.get("RESOURCE_EXHAUSTED", 0), 1,
                                "no call was refused: the calls did not overlap? %s" % codes)
        # ASan's quarantine keeps freed request buffers resident for a while.
        limit = self.MAX_HWM_KB + (128 * 1000 if paths.regd_is_sanitized() else 0)
        self.assertLess(hwm, limit, "VmHWM %d kB" % hwm)

        # The budget is whole again: as many calls fit at once as on the fresh daemon.
        time.sleep(0.5)
        more = [random_bytes(self.SIZE, "inline-after-%d" % i) for i in range(4)]
        streams, _, _ = self.batch(d, full_repo, more)
        fit_after = self.check_outcomes(streams, more, repo).get("OK", 0)
        self.assertEqual(fit_after, fit, "after the 32 calls %d of 4 fit at once, before %d: "
                         "budget leaked" % (fit_after, fit))
        d.stop()


# -- 6. hashing stops at cancel --------------------------------------------------------------------

class HashCancelTest(LimitsCase):
    def test_cancelled_hash_of_a_sparse_20gib_file_stops(self):
        path = os.path.join(ALLOWED, uniq("sparse"))
        with open(path, "wb") as f:
            f.truncate(20 << 30)
        pid = D.proc.pid
        call = D.stub.WriteLayer(pb.WriteLayerRequest(
            repo="%s/limits/%s" % (REG.host, uniq("sparse")), layer=pb.BlobSource(path=path),
            retry=retry()), timeout=T)
        events = []
        reader = threading.Thread(target=lambda: Stream(call, lambda s, ev: events.append(ev)),
                                  daemon=True)
        cpu0 = cpu_seconds(pid)
        reader.start()
        time.sleep(1.0)
        cpu1 = cpu_seconds(pid)
        call.cancel()
        cancelled = time.monotonic()
        reader.join(5)
        busy = cpu1 - cpu0
        note("hash cancel: CPU used in the second before the cancel", "%.2fs" % busy)
        self.assertGreater(busy, 0.3, "regd was not hashing (%.2f CPU s in 1 s): the test "
                           "proves nothing" % busy)
        # Idle again within ~3 s: a 1 s window with (almost) no CPU time.
        idle_at = None
        last = cpu_seconds(pid)
        while time.monotonic() - cancelled < 6:
            time.sleep(0.5)
            now = cpu_seconds(pid)
            if now - last < 0.05:
                idle_at = time.monotonic() - cancelled
                break
            last = now
        note("hash cancel: idle after the cancel", "%s" % (
            "%.1fs" % idle_at if idle_at is not None else "never (6 s)"))
        self.assertIsNotNone(idle_at, "regd kept using CPU for 6 s after the cancel")
        self.assertLess(idle_at, 3.5, "regd used CPU for %.1fs after the cancel" % idle_at)
        self.assertNotIn("result", [e.WhichOneof("event") for e in events])


# -- 7. cancelled uploads leave no session -------------------------------------------------------

class CancelSessionTest(LimitsCase):
    SIZE = 40 * MiB
    RATE = 6 * MiB   # an 8 MiB chunk in ~1.3 s

    def uploads(self, repo):
        return [e for e in PROXY.log() if repo in e.path and e.kind == "upload"]

    def wait_no_sessions(self, repo, what):
        try:
            util.wait_until(lambda: not upload_sessions(REG, repo), 15,
                            what="no upload session for " + repo)
        except TimeoutError:
            self.fail("%s: the registry still holds %s 15 s later; requests: %s"
                      % (what, upload_sessions(REG, repo), self.uploads(repo)))

    def test_client_cancel_mid_chunk_leaves_no_session(self):
        for cancel_at in (2 * MiB, CHUNK + 2 * MiB):
            with self.subTest(cancel_at=cancel_at):
                data = random_bytes(self.SIZE, "cancel-%d" % cancel_at)
                path = write_file(os.path.join(ALLOWED, "blobs"), uniq("cancel"), data)
                repo = "limits/" + uniq("cancel")
                PROXY.clear_faults()
                PROXY.add_fault("throttle", method="PATCH", times=None, rate=self.RATE)
                call = D.stub.WriteLayer(pb.WriteLayerRequest(
                    repo="%s/%s" % (PROXY.host, repo), layer=pb.BlobSource(path=path),
                    retry=retry()), timeout=T)
                cancelled = None
                seen = []
                try:
                    for ev in call:
                        seen.append(ev.WhichOneof("event"))
                        if (cancelled is None and ev.WhichOneof("event") == "progress"
                                and ev.progress.complete >= cancel_at):
                            cancelled = time.monotonic()
                            call.cancel()
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.CANCELLED, e.details())
                self.assertIsNotNone(cancelled, "never reached %d bytes: %s" % (cancel_at, seen))
                self.assertNotIn("result", seen)
                self.assertTrue(any(e.method == "PATCH" for e in self.uploads(repo)),
                                self.uploads(repo))
                self.wait_no_sessions(repo, "cancel at %d bytes" % cancel_at)
                note("cancel at %d MiB: no session after" % (cancel_at // MiB),
                     "%.1fs" % (time.monotonic() - cancelled))
                self.assertEqual(head_blob(REG.url, repo, sha256(data)), 404)
                PROXY.wait_idle(settle=0.3)

    def test_sigterm_mid_upload_leaves_no_session_and_exits_in_time(self):
        grace = 1
        data = random_bytes(self.SIZE, "sigterm")
        path = write_file(os.path.join(ALLOWED, "blobs"), uniq("sigterm"), data)
        repo = "limits/" + uniq("sigterm")
        PROXY.add_fault("throttle", method="PATCH", times=None, rate=self.RATE)
        d = self.start_daemon("regd-sigterm", insecure_registries=[PROXY.host],
                              allowed_paths=[ALLOWED],
                              extra_args=["--chunk_size=%d" % CHUNK,
                                          "--shutdown_grace=%ds" % grace])
        call = d.stub.WriteLayer(pb.WriteLayerRequest(
            repo="%s/%s" % (PROXY.host, repo), layer=pb.BlobSource(path=path), retry=retry()),
            timeout=T)
        for ev in call:
            if ev.WhichOneof("event") == "progress" and ev.progress.complete >= 2 * MiB:
                break
        signalled = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait(grace + 14)
        took = time.monotonic() - signalled
        note("SIGTERM mid-upload (grace %ds): exit" % grace, "rc %s after %.2fs" % (rc, took))
        self.assertEqual(rc, 0, "exit code %s after SIGTERM:\n%s" % (rc, d.log()))
        self.assertLess(took, grace + 6, "shutdown took %.1fs:\n%s" % (took, d.log()))
        with self.assertRaises(grpc.RpcError):
            for ev in call:
                self.assertNotEqual(ev.WhichOneof("event"), "result")
        self.wait_no_sessions(repo, "SIGTERM mid-upload")
        self.assertEqual(head_blob(REG.url, repo, sha256(data)), 404)


# -- 8. listening -------------------------------------------------------------------------------

class ListenTest(LimitsCase):
    def expect_refused(self, listen, label):
        d = Daemon(ENV.workdir, listen=listen, ready_timeout=10)
        ENV.logs.append((label, d.stderr_path))
        try:
            start = time.monotonic()
            with self.assertRaises(DaemonError) as cm:
                d.start()
            self.assertIn("exited with", str(cm.exception),
                          "the second regd did not fail fast:\n%s" % d.log())
            self.assertNotEqual(d.returncode, 0)
            self.assertLess(time.monotonic() - start, 10)
            self.assertFalse(os.path.exists(d.ready_path))
            return d.log()
        finally:
            d.kill()

    def test_busy_tcp_port_is_refused(self):
        first = self.start_daemon("regd-port-first")
        port = first.address.rsplit(":", 1)[1]
        log = self.expect_refused("127.0.0.1:" + port, "regd-port-second")
        self.assertTrue(port in log or "in use" in log.lower(),
                        "the message does not name the port or say it is in use:\n" + log)
        # The first one keeps all its connections.
        for _ in range(5):
            self.assertEqual(health(first.target), S.health_pb2.HealthCheckResponse.SERVING)
        first.stop()

    def test_live_unix_socket_is_refused_and_a_stale_one_replaced(self):
        first = self.start_daemon("regd-unix-first", listen="unix")
        path = first.address[len("unix:"):]
        log = self.expect_refused("unix:" + path, "regd-unix-second")
        self.assertIn(path, log, "the message does not name the socket:\n" + log)
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode), "the socket file is gone")
        for _ in range(3):
            self.assertEqual(health("unix:" + path), S.health_pb2.HealthCheckResponse.SERVING,
                             "the first regd no longer serves on its socket")
        # SIGKILL leaves the socket file behind; a new regd replaces it.
        first.proc.kill()
        first.proc.wait(10)
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        third = Daemon(ENV.workdir, listen="unix:" + path)
        ENV.logs.append(("regd-unix-third", third.stderr_path))
        third.start()
        self.addCleanup(third.kill)
        self.assertEqual(third.address, "unix:" + path)
        self.assertEqual(health("unix:" + path), S.health_pb2.HealthCheckResponse.SERVING)
        third.stop()


if __name__ == "__main__":
    testing.main("test_limits")
