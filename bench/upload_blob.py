#!/usr/bin/python3
"""UploadBlob benchmark: streamed uploads (the caller sends the bytes) against
WriteLayer from a path, and the daemon's memory under many streams.

    bench/run.sh --upload-blob [--size-mib 1024] [--runs 3] [--streams 16]
                               [--stream-mib 256] [--memory-runs 3] [--out FILE]
                               [--skip-throughput] [--skip-memory] [--keep-files]
                               [--sweep-grpc-memory] [--no-python]

The client is the Go example (client-examples/go/regd-example, built with
client-examples/go/build.sh first), one process per call, each under
/usr/bin/time. Every call goes to a fresh daemon (a copy of $REGD_BIN, default
build/server/regd, taken at start so that a rebuild during the run changes
nothing) and a fresh docker-registry on loopback (plain HTTP, its own storage).

Throughput: one blob of --size-mib random bytes, three ways, interleaved run
by run, median of --runs:
  upload          `regd-example upload REPO FILE`: UploadBlob; the client
                  hashes the file first (the digest is required in `start`),
                  then streams it in 1 MiB chunks. It hashes with OpenSSL's
                  libcrypto through cgo (client-examples/go/sha256_openssl.go);
                  built without cgo it falls back to Go 1.19's crypto/sha256,
                  which has no SHA-NI code and is about 3x slower here.
  upload -digest  the same with the digest given: no hashing in the client.
  write-layer     `regd-example write-layer REPO FILE`: WriteLayer with a path
                  source and no digest; the daemon hashes the file, then
                  reads it again to upload it.
and, for reference, the Python example's `upload REPO FILE` (it hashes with
hashlib, i.e. OpenSSL, like the daemon and the Go example).
Wall is the client process's, from exec to exit (hashing included); CPU and
peak RSS of the daemon from /proc/PID/stat and VmHWM (a fresh daemon per run,
so its startup is included), its thread count sampled every 20 ms.

Memory: --streams concurrent `regd-example upload -digest D REPO FILE`
processes of distinct --stream-mib blobs (digests precomputed, so every
stream starts at once) to one repository of one registry, through one daemon;
with the daemon's default flags (--registry_concurrency 8: only 8 uploads run
at once, the other streams wait for a slot before regd asks them for bytes)
and with --registry_concurrency equal to --streams; --sweep-grpc-memory adds
rows with --grpc_memory (the gRPC resource quota, 64 MiB by default) at 16,
32 and 128 MiB. Reported: the daemon's VmHWM
at the end (and the VmRSS/Threads maxima sampled every 20 ms), wall from the
first start to the last exit, aggregate throughput = total bytes / wall.

Every upload is verified: the client's result must be UPLOADED with the file's
digest and size, and the registry must answer HEAD for the blob with its size.
The files are made once under $BENCH_DIR/upload-blob (default
$TMPDIR/regd-bench-cache) and removed at the end unless --keep-files.
"""

import argparse
import datetime
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench as B  # noqa: E402  (also puts tests/ on sys.path)

from fixtures import daemon as daemon_mod  # noqa: E402
from fixtures import paths  # noqa: E402
from fixtures import registry as registry_mod  # noqa: E402
from fixtures import util  # noqa: E402

MiB = B.MiB
GO_DIR = os.path.join(ROOT, "client-examples", "go")
GO_CLIENT = os.path.join(GO_DIR, "regd-example")
PY_DIR = os.path.join(ROOT, "client-examples", "python")
PY_CLIENT = os.path.join(PY_DIR, "regd_client.py")
PYTHON = "/usr/bin/python3"
SAMPLE_S = 0.02
TARGET_WALL_RATIO = 1.25
TARGET_RSS_MIB = 96.0

log = B.log


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------

def make_file(path, size, seed):
    """A file of `size` pseudo-random bytes; returns its sha256 digest (cached
    in PATH.sha256 next to it)."""
    side = path + ".sha256"
    if os.path.exists(path) and os.path.exists(side) and os.path.getsize(path) == size:
        with open(side) as f:
            return f.read().strip()
    rng = random.Random(seed)
    h = hashlib.sha256()
    left = size
    with open(path + ".tmp", "wb") as f:
        while left:
            n = min(left, 8 * MiB)
            b = rng.randbytes(n)
            h.update(b)
            f.write(b)
            left -= n
    os.rename(path + ".tmp", path)
    digest = "sha256:" + h.hexdigest()
    with open(side, "w") as f:
        f.write(digest + "\n")
    return digest


def warm(paths_):
    for p in paths_:
        with open(p, "rb") as f:
            while f.read(8 * MiB):
                pass


# ---------------------------------------------------------------------------
# Measuring the daemon
# ---------------------------------------------------------------------------

class Run:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------------------
# The bench
# ---------------------------------------------------------------------------

class UploadBench:
    def __init__(self, args, workdir, files_dir):
        self.args = args
        self.workdir = workdir
        self.files_dir = files_dir

    def new_registry(self):
        return registry_mod.Registry(workdir=tempfile.mkdtemp(prefix="reg-", dir=self.workdir),
                                     log_level="warn").start()

    def drop_registry(self, reg):
        wd = reg.workdir
        reg.stop()
        shutil.rmtree(wd, ignore_errors=True)
        os.sync()

    def new_daemon(self, reg_host, extra_args=()):
        return daemon_mod.Daemon(self.workdir, insecure_registries=[reg_host],
                                 allowed_paths=[self.files_dir], extra_args=list(extra_args),
                                 rpc_timeout=B.RPC_TIMEOUT, stop_timeout=60).start()

    def client(self, addr, argv, lang="go"):
        """Starts the Go (or Python) example under /usr/bin/time; returns
        (Popen, time file, stdout file)."""
        tfile = tempfile.mktemp(prefix="time-", dir=self.workdir)
        out = tempfile.mktemp(prefix="out-", dir=self.workdir)
        if lang == "go":
            prog = [GO_CLIENT, "-addr", addr]
        else:
            prog = [PYTHON, PY_CLIENT, "--addr", addr]
        cmd = [B.TIME_BIN, "-f", "%e %U %S %M", "-o", tfile] + prog + argv
        with open(out, "wb") as o, open(out + ".err", "wb") as e:
            p = subprocess.Popen(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
        return p, tfile, out

    @staticmethod
    def finish(p, tfile, out, want_digest, want_size, label):
        rc = p.wait(timeout=B.RPC_TIMEOUT)
        with open(out, "rb") as f:
            stdout = f.read()
        with open(out + ".err", "rb") as f:
            stderr = f.read().decode(errors="replace")
        os.unlink(out)
        os.unlink(out + ".err")
        with open(tfile) as f:
            e, u, s, m = f.read().split()[-4:]
        os.unlink(tfile)
        if rc != 0:
            errs = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
            sent = [ln for ln in stderr.splitlines() if ln.startswith("sent ")]
            raise RuntimeError("%s: exit %d, %s (%s)" % (
                label, rc, errs[-1] if errs else stderr.strip().splitlines()[-1:],
                sent[-1] if sent else "sent ?"))
        res = json.loads(stdout)
        got = (res.get("outcome"), res["descriptor"]["digest"], int(res["descriptor"]["size"]))
        if got != ("UPLOADED", want_digest, want_size):
            raise RuntimeError("%s: result %r, want UPLOADED %s %d" % (label, got, want_digest,
                                                                        want_size))
        sent = None
        for line in stderr.splitlines():
            if line.startswith("sent ") and " bytes in " in line:
                sent = int(line.split()[1])
        return Run(client_wall=float(e), client_cpu=float(u) + float(s), client_rss_kb=int(m),
                   sent=sent)

    @staticmethod
    def verify(reg, repo, digest, size):
        status, headers, _ = util.http_get("%s/v2/%s/blobs/%s" % (reg.url, repo, digest),
                                           method="HEAD", timeout=30)
        length = int(headers.get("Content-Length", "-1")) if headers else -1
        if status != 200 or length != size:
            raise RuntimeError("verify %s@%s: HEAD %s, length %s, want 200, %d"
                               % (repo, digest, status, length, size))

    # -- throughput -----------------------------------------------------------
    def one(self, method, path, digest, size):
        reg = self.new_registry()
        try:
            repo = "bench/%s" % method.replace(" ", "").replace("-", "")
            d = self.new_daemon(reg.host)
            try:
                pid = d.proc.pid
                idle = B.proc_status_kb(pid, "VmRSS")
                target = "%s/%s" % (reg.host, repo)
                lang = "python" if method == "python upload" else "go"
                if method in ("upload", "python upload"):
                    argv = ["upload", target, path]
                elif method == "upload -digest":
                    argv = ["upload", "-digest", digest, target, path]
                elif method == "write-layer":
                    argv = ["write-layer", target, path]
                else:
                    raise ValueError(method)
                os.sync()
                reg_cpu0 = B.proc_cpu_seconds(reg.proc.pid)
                cpu0 = B.proc_cpu_seconds(pid)
                with B.Sampler(pid, SAMPLE_S) as smp:
                    t0 = time.monotonic()
                    p, tfile, out = self.client(d.address, argv, lang)
                    r = self.finish(p, tfile, out, digest, size, method)
                    r.wall = time.monotonic() - t0
                r.cpu = B.proc_cpu_seconds(pid) - cpu0
                r.registry_cpu = B.proc_cpu_seconds(reg.proc.pid) - reg_cpu0
                r.rss_kb = B.proc_status_kb(pid, "VmHWM")
                r.threads = smp.threads
                r.idle_kb = idle
            finally:
                rc = d.stop(check=False)
                if rc != 0:
                    log("WARNING: %s: regd exited with %s after SIGTERM" % (method, rc))
            self.verify(reg, repo, digest, size)
            return r
        finally:
            self.drop_registry(reg)

    # -- memory ----------------------------------------------------------------
    def many(self, files, flags):
        reg = self.new_registry()
        try:
            d = self.new_daemon(reg.host, flags)
            repo = "bench/many"
            try:
                pid = d.proc.pid
                idle = B.proc_status_kb(pid, "VmRSS")
                os.sync()
                reg_cpu0 = B.proc_cpu_seconds(reg.proc.pid)
                cpu0 = B.proc_cpu_seconds(pid)
                errors, done = [], []  # done: the files whose upload succeeded
                with B.Sampler(pid, SAMPLE_S) as smp:
                    t0 = time.monotonic()
                    procs = [self.client(d.address, ["upload", "-digest", dg,
                                                     "%s/%s" % (reg.host, repo), p])
                             for p, dg, _ in files]
                    clients = []
                    for (p, tfile, out), f in zip(procs, files):
                        try:
                            clients.append(self.finish(p, tfile, out, f[1], f[2],
                                                       os.path.basename(f[0])))
                            done.append(f)
                        except Exception as e:  # noqa: BLE001 (reported)
                            errors.append(str(e))
                    wall = time.monotonic() - t0
                cpu = B.proc_cpu_seconds(pid) - cpu0
                reg_cpu = B.proc_cpu_seconds(reg.proc.pid) - reg_cpu0
                hwm = B.proc_status_kb(pid, "VmHWM")
            finally:
                rc = d.stop(check=False)
                if rc != 0:
                    errors.append("regd exited with %s after SIGTERM" % rc)
            failed = len(errors)
            # A stream that said UPLOADED must have its blob on the registry.
            for path, dg, size in done:
                try:
                    self.verify(reg, repo, dg, size)
                except Exception as e:  # noqa: BLE001
                    errors.append(str(e))
            total = sum(s for _, _, s in files)
            return Run(streams=len(files), flags=" ".join(flags) or "(defaults)",
                       blob_size=files[0][2], total=total, wall=wall, cpu=cpu,
                       registry_cpu=reg_cpu, rss_kb=hwm, sampled_rss_kb=smp.rss_kb,
                       threads=smp.threads, idle_kb=idle, errors=errors, failed=failed,
                       uploaded=len(clients), uploaded_bytes=sum(s for _, _, s in done),
                       client_walls=sorted(c.client_wall for c in clients),
                       client_rss_kb=max([c.client_rss_kb for c in clients] or [0]))
        finally:
            self.drop_registry(reg)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

METHODS = ("upload", "upload -digest", "write-layer", "python upload")
LABELS = {
    "python upload": "UploadBlob: Python `upload REPO FILE` (reference: hashes with OpenSSL)",
    "upload": "UploadBlob: Go `upload REPO FILE` (client hashes, then streams)",
    "upload -digest": "UploadBlob: Go `upload -digest D REPO FILE` (no client hashing)",
    "write-layer": "WriteLayer: Go `write-layer REPO FILE` (path; regd hashes, then reads)",
}


def render(args, size, per_run, mem, env_notes):
    methods = [m for m in METHODS if m in per_run]
    lines = []
    add = lines.append
    if per_run:
        med = {m: {k: statistics.median(getattr(r, k) for r in rs)
                   for k in ("wall", "cpu", "rss_kb", "threads", "client_cpu",
                             "client_rss_kb", "registry_cpu")}
               for m, rs in per_run.items()}
        add("UploadBlob vs WriteLayer: one %.0f MiB blob of random bytes, a fresh regd and "
            "registry per run; median of %d run(s)." % (size / MiB, args.runs))
        add("")
        add("| method | wall s | MiB/s | regd CPU s | regd peak RSS MiB | regd threads peak "
            "| client CPU s | client peak RSS MiB | registry CPU s |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m in methods:
            r = med[m]
            add("| %s | %.2f | %.0f | %.2f | %.1f | %d | %.2f | %.1f | %.2f |" % (
                LABELS[m], r["wall"], size / MiB / r["wall"], r["cpu"], r["rss_kb"] / 1024.0,
                r["threads"], r["client_cpu"], r["client_rss_kb"] / 1024.0, r["registry_cpu"]))
        add("")
        ratio = med["upload"]["wall"] / med["write-layer"]["wall"]
        ratio_d = med["upload -digest"]["wall"] / med["write-layer"]["wall"]
        add("| target | measured | result |")
        add("| --- | ---: | :---: |")
        add("| UploadBlob (`upload`) wall <= %.2f x WriteLayer | %.2f x | %s |"
            % (TARGET_WALL_RATIO, ratio, "PASS" if ratio <= TARGET_WALL_RATIO else "FAIL"))
        add("| (reference) Go `upload -digest` wall / WriteLayer | %.2f x | - |" % ratio_d)
        if "python upload" in med:
            add("| (reference) Python `upload` wall / WriteLayer | %.2f x | - |"
                % (med["python upload"]["wall"] / med["write-layer"]["wall"]))
        add("")
        add("Per run (wall s / regd CPU s / regd peak RSS MiB):")
        add("")
        add("| run | %s |" % " | ".join(methods))
        add("| ---: |%s" % (" --- |" * len(methods)))
        for i in range(args.runs):
            add("| %d | %s |" % (i + 1, " | ".join(
                "%.2f / %.2f / %.1f" % (per_run[m][i].wall, per_run[m][i].cpu,
                                        per_run[m][i].rss_kb / 1024.0) for m in methods)))
        idle = [r.idle_kb for rs in per_run.values() for r in rs]
        add("")
        add("regd RSS right after start: %.1f MiB." % (statistics.median(idle) / 1024.0))
    if mem:
        if lines:
            add("")
        first = mem[0]
        add("Memory: %d concurrent UploadBlob streams (%d Go `upload -digest` processes) of "
            "distinct %.0f MiB blobs (%.0f MiB in all) to one repository, one regd; "
            "%d run(s) per row, the worst peak and the median wall reported; aggregate "
            "MiB/s counts only the blobs that were UPLOADED."
            % (first.streams, first.streams, first.blob_size / MiB, first.total / MiB,
               args.memory_runs))
        add("")
        add("| streams | regd flags | wall s | aggregate MiB/s | regd CPU s | "
            "regd peak RSS MiB (VmHWM) | regd RSS sampled max MiB | regd threads peak | "
            "streams UPLOADED per run | errors (first) |")
        add("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        rows = {}
        for r in mem:
            rows.setdefault(r.flags, []).append(r)
        worst = {}
        for flags, rs in rows.items():
            wall = statistics.median(r.wall for r in rs)
            hwm = max(r.rss_kb for r in rs) / 1024.0
            worst[flags] = hwm
            errs = [e for r in rs for e in r.errors]
            add("| %d | %s | %.2f | %.0f | %.2f | %.1f | %.1f | %d | %s | %s |" % (
                rs[0].streams, flags, wall,
                statistics.median(r.uploaded_bytes / MiB / r.wall for r in rs),
                statistics.median(r.cpu for r in rs), hwm,
                max(r.sampled_rss_kb for r in rs) / 1024.0, max(r.threads for r in rs),
                ", ".join("%d" % r.uploaded for r in rs),
                ("%d: %s" % (len(errs), errs[0][:300].replace("|", "/"))) if errs
                else "none"))
        add("")
        add("| target | measured | result |")
        add("| --- | ---: | :---: |")
        for flags, hwm in worst.items():
            if "--grpc_memory" in flags:
                continue  # the sweep explains; the target is about the defaults
            add("| regd peak RSS < %.0f MiB, %d streams, %s | %.1f MiB | %s |"
                % (TARGET_RSS_MIB, first.streams, flags, hwm,
                   "PASS" if hwm < TARGET_RSS_MIB else "FAIL"))
        add("")
        add("Per run (wall s / regd peak RSS MiB / threads peak / client walls min-median-max s "
            "/ streams that failed):")
        add("")
        add("| regd flags | run | wall / RSS / threads | clients | failed |")
        add("| --- | ---: | --- | --- | ---: |")
        for flags, rs in rows.items():
            for i, r in enumerate(rs):
                cw = r.client_walls or [0]
                add("| %s | %d | %.2f / %.1f / %d | %.2f-%.2f-%.2f | %d |" % (
                    flags, i + 1, r.wall, r.rss_kb / 1024.0,
                    r.threads, cw[0], statistics.median(cw), cw[-1], r.failed))
    if env_notes:
        add("")
        add(env_notes)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="UploadBlob benchmark (see the module docstring)")
    p.add_argument("--size-mib", type=int, default=1024, help="throughput blob (default 1024)")
    p.add_argument("--runs", type=int, default=3, help="throughput runs per method (default 3)")
    p.add_argument("--streams", type=int, default=16, help="memory: concurrent streams (16)")
    p.add_argument("--stream-mib", type=int, default=256, help="memory: MiB per blob (256)")
    p.add_argument("--memory-runs", type=int, default=3, help="memory: runs per row (3)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--no-python", action="store_true",
                   help="leave out the Python example's upload (a reference row)")
    p.add_argument("--sweep-grpc-memory", action="store_true",
                   help="memory: also rows with --grpc_memory 16, 32 and 128 MiB")
    p.add_argument("--keep-files", action="store_true",
                   help="keep the generated blobs under $BENCH_DIR/upload-blob")
    p.add_argument("--no-build", action="store_true",
                   help="do not run client-examples/go/build.sh (use the existing binary)")
    p.add_argument("--out", help="also write the tables (markdown) to this file")
    a = p.parse_args(argv)
    if a.runs < 1 or a.memory_runs < 1 or a.streams < 1 or a.size_mib < 1 or a.stream_mib < 1:
        p.error("counts and sizes must be >= 1")
    return a


def main(argv):
    args = parse_args(argv)
    B.exit_cleanly_on_signals()
    missing = [t for t in (paths.REGISTRY_BIN, B.TIME_BIN, paths.regd_bin())
               if not os.access(t, os.X_OK)]
    if missing:
        sys.exit("bench: missing %s (apt-get install docker-registry time; build regd or set "
                 "REGD_BIN)" % ", ".join(missing))
    if not args.no_build:
        res = subprocess.run([os.path.join(GO_DIR, "build.sh")], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        if res.returncode != 0:
            sys.exit("bench: client-examples/go/build.sh failed:\n" + res.stdout.decode())
    if not os.access(GO_CLIENT, os.X_OK):
        sys.exit("bench: no Go example at %s (run client-examples/go/build.sh)" % GO_CLIENT)

    cache_root = os.environ.get("BENCH_DIR") or os.path.join(tempfile.gettempdir(),
                                                             "regd-bench-cache")
    files_dir = os.path.join(cache_root, "upload-blob")
    os.makedirs(files_dir, exist_ok=True)
    os.chmod(files_dir, 0o755)
    workdir = tempfile.mkdtemp(prefix="run-", dir=cache_root)
    try:
        # The daemon under test, copied: a rebuild of $REGD_BIN during the run
        # cannot change it.
        src_bin = paths.regd_bin()
        bin_copy = os.path.join(workdir, "regd")
        shutil.copy2(src_bin, bin_copy)
        with open(bin_copy, "rb") as f:
            bin_sha = hashlib.sha256(f.read()).hexdigest()[:12]
        os.environ["REGD_BIN"] = bin_copy
        env_notes = ("regd binary: %s (mtime %s UTC, sha256 %s...). Load average at the start: "
                     "%s." % (os.path.relpath(src_bin, ROOT) if src_bin.startswith(ROOT)
                              else src_bin,
                              datetime.datetime.utcfromtimestamp(os.path.getmtime(src_bin))
                              .strftime("%Y-%m-%d %H:%M"), bin_sha, loadavg()))
        bench = UploadBench(args, workdir, files_dir)

        per_run, size = {}, args.size_mib * MiB
        if not args.skip_throughput:
            path = os.path.join(files_dir, "blob-%dMiB.bin" % args.size_mib)
            log("making %s" % path)
            digest = make_file(path, size, "regd-upload-blob-%d" % args.size_mib)
            os.chmod(path, 0o644)
            warm([path])
            # One untimed upload first: whichever call comes first is slower.
            bench.one("write-layer", path, digest, size)
            log("warm-up done")
            methods = [m for m in METHODS if not (args.no_python and m == "python upload")]
            if "python upload" in methods:
                # The Python stubs are generated once, before anything is timed.
                os.environ["REGD_PY_STUB_DIR"] = os.path.join(workdir, "py-stubs")
                subprocess.run([PYTHON, "-c", "import sys; sys.argv = ['x']; "
                                "sys.path.insert(0, %r); import regd_client" % PY_DIR],
                               check=True)
            per_run = {m: [] for m in methods}
            for i in range(args.runs):
                for m in methods:
                    r = bench.one(m, path, digest, size)
                    per_run[m].append(r)
                    log("run %d/%d %-14s wall %.2fs regd cpu %.2fs rss %.1fMiB threads %d "
                        "client cpu %.2fs (load %s)" % (i + 1, args.runs, m, r.wall, r.cpu,
                                                        r.rss_kb / 1024.0, r.threads,
                                                        r.client_cpu, loadavg()))

        mem = []
        if not args.skip_memory:
            files = []
            for i in range(args.streams):
                p = os.path.join(files_dir, "stream-%dMiB-%02d.bin" % (args.stream_mib, i))
                files.append((p, make_file(p, args.stream_mib * MiB,
                                           "regd-upload-blob-stream-%d-%d" % (args.stream_mib, i)),
                              args.stream_mib * MiB))
            log("made %d files of %d MiB" % (args.streams, args.stream_mib))
            warm([p for p, _, _ in files])
            configs = [[], ["--registry_concurrency=%d" % args.streams]]
            if args.sweep_grpc_memory:
                configs += [["--registry_concurrency=%d" % args.streams,
                             "--grpc_memory=%d" % (q * MiB)] for q in (16, 32, 128)]
            for i in range(args.memory_runs):
                for flags in configs:
                    r = bench.many(files, flags)
                    mem.append(r)
                    log("memory run %d/%d (%s): wall %.2fs rss %.1fMiB (sampled %.1f) "
                        "threads %d failed %d/%d (load %s)"
                        % (i + 1, args.memory_runs, r.flags, r.wall, r.rss_kb / 1024.0,
                           r.sampled_rss_kb / 1024.0, r.threads, r.failed, r.streams,
                           loadavg()))
                    for e in r.errors[:3]:
                        log("  %s" % e)
        env_notes += " Load average at the end: %s." % loadavg()
        text = render(args, size, per_run, mem, env_notes)
        sys.stdout.write(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write("<!-- bench/run.sh --upload-blob %s, %s UTC -->\n\n" % (
                    " ".join(argv), datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")))
                f.write(text)
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.keep_files:
            shutil.rmtree(files_dir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
