#!/usr/bin/python3
"""Read benchmark (issue 9): regd's reads side by side with the direct ways, in one run.

    bench/run.sh --read [--parts a,b,c] [--runs 3] [--size-mib 1024] [--pull-size-mib 1024]
                        [--unary-seconds 10] [--concurrency 16] [--to-file] [--window BYTES]
                        [--no-build] [--out FILE]

One fresh docker-registry (distribution 2.8, plain HTTP on loopback, its own
storage) serves the whole run; regd is $REGD_BIN (default build/server/regd),
copied at the start so a rebuild during the run changes nothing, started with
--insecure_registries=<registry> --allowed_paths=<pull dir>. Clients are
separate processes: the Go example (client-examples/go/regd-example, built
with its build.sh unless --no-build) and the stdlib Go peer (bench/peer,
built here with `go build` into the run's temp dir).

a. ReadBlob: one --size-mib blob of random bytes, pushed once (curl POST + PUT).
   Per run, interleaved, each the wall time of one client process:
     curl | openssl    `curl -s URL | openssl dgst -sha256`, the digest checked:
                       the verified floor
     curl -o /dev/null unverified: the transfer alone
     regd read-blob    `regd-example read-blob REPO DIGEST -o /dev/null`: ReadBlob
                       through regd, hashed by the client (OpenSSL) and by regd
     regd -no-verify   the same, hashed by regd only (it ends the stream with
                       DATA_LOSS on a mismatch, the last chunk held back until
                       it has checked): the target's row
   (--to-file adds `curl -o FILE` and `read-blob -o FILE` rows, into the run's
   temp dir; --window N adds a `read-blob` row with `-window N`). regd's CPU
   (utime+stime from /proc/PID/stat) per run; one daemon for the part.
   Reported: median GB/s (10^9 bytes/s); target regd / verified floor >= 0.8.

b. Unary rates: a small image (bench.py's layout builder, 4 MiB) pushed with
   skopeo; 16 (--concurrency) callers for --unary-seconds each (after 1 s
   uncounted warm-up), per run:
     direct HEAD        peer head-rate: HEAD the manifest by tag
     Exists, GetDescriptor  regd-example hammer, the same tag ref
     direct GET pair    peer head-rate --method GET: the manifest by digest, then
                        the config blob, one round = the two requests Inspect needs
     Inspect (digest)   regd-example hammer -rpc inspect of REPO@DIGEST
   Targets: Exists and GetDescriptor >= 0.8 x direct HEAD/s; digest Inspect/s
   >= 2 x direct GET pairs/s. A fresh daemon for the part.

c. Pull of a --pull-size-mib image (bench.py's layout: 4 layers + config),
   pushed once with skopeo, into a fresh empty directory per run:
     regd PullImage     `regd-example pull REF -layout DIR` (concurrency 4), a
                        fresh daemon per run (started before the clock)
     skopeo             `skopeo copy --src-tls-verify=false docker://REF oci:DIR:latest`
     crane-like         `peer crane-pull --jobs 4` (crane is not in Debian 12),
                        and the same with --fsync (regd and skopeo fsync blobs)
   `sync` between pulls, outside the timed part; the page cache is not dropped.
   Each result is checked: index.json names the manifest, every blob has its
   size. Targets: regd <= 0.5 x skopeo and <= crane-like.

Run with /usr/bin/python3 (grpc for the fixtures). Inputs are cached under
$BENCH_DIR (default $TMPDIR/regd-bench-cache); everything else is removed.
"""

import argparse
import datetime
import hashlib
import json
import os
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
import upload_blob as U  # noqa: E402

from fixtures import daemon as daemon_mod  # noqa: E402
from fixtures import paths  # noqa: E402
from fixtures import registry as registry_mod  # noqa: E402

MiB = B.MiB
GO_DIR = U.GO_DIR
GO_CLIENT = U.GO_CLIENT
PEER_SRC = os.path.join(HERE, "peer")
OCI_MANIFEST = B.OCI_MANIFEST
TARGET_READ = 0.8
TARGET_HEAD = 0.8
TARGET_INSPECT = 2.0
TARGET_PULL_SKOPEO = 0.5
TARGET_PULL_CRANE = 1.0

log = B.log


class Run:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def timed(cmd, workdir, env=None):
    """Runs cmd under /usr/bin/time; returns (wall s, client CPU s, stdout, stderr).
    Wall is measured here, around the process. Raises on a non-zero exit."""
    tfile = tempfile.mktemp(prefix="time-", dir=workdir)
    t0 = time.monotonic()
    res = subprocess.run([B.TIME_BIN, "-f", "%U %S", "-o", tfile] + list(cmd),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         timeout=B.RPC_TIMEOUT)
    wall = time.monotonic() - t0
    with open(tfile) as f:
        u, s = f.read().split()[-2:]
    os.unlink(tfile)
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip()
        raise CommandError(res.returncode, "%s: exit %d: %s"
                           % (" ".join(cmd[:3]), res.returncode, err[-2000:]))
    return wall, float(u) + float(s), res.stdout, res.stderr


class CommandError(RuntimeError):
    def __init__(self, code, msg):
        super().__init__(msg)
        self.code = code


def cpu(pid):
    return B.proc_cpu_seconds(pid)


class ReadBench:
    def __init__(self, args, workdir, cache_root):
        self.args = args
        self.workdir = workdir
        self.cache_root = cache_root
        self.peer = os.path.join(workdir, "peer")
        self.pull_root = os.path.join(workdir, "pulls")
        os.makedirs(self.pull_root)
        self.reg = None

    # -- plumbing --------------------------------------------------------------
    def start_registry(self):
        self.reg = registry_mod.Registry(
            workdir=tempfile.mkdtemp(prefix="reg-", dir=self.workdir), log_level="warn").start()

    def new_daemon(self):
        return daemon_mod.Daemon(self.workdir, insecure_registries=[self.reg.host],
                                 allowed_paths=[self.pull_root], rpc_timeout=B.RPC_TIMEOUT,
                                 extra_args=list(self.args.regd_flag),
                                 stop_timeout=60).start()

    @staticmethod
    def stop_daemon(d, label):
        rc = d.stop(check=False)
        if rc != 0:
            log("WARNING: %s: regd exited with %s after SIGTERM" % (label, rc))

    def go(self, d, *argv):
        return [GO_CLIENT, "-addr", d.address] + list(argv)

    def push_blob(self, repo, path, digest):
        """POST + monolithic PUT with curl, as bench.py's curl push does."""
        out = subprocess.run([B.CURL, "-sS", "--fail-with-body", "-X", "POST", "-D", "-",
                              "-o", "/dev/null",
                              "%s/v2/%s/blobs/uploads/" % (self.reg.url, repo)],
                             stdout=subprocess.PIPE, check=True).stdout.decode("latin-1")
        loc = [ln.split(":", 1)[1].strip() for ln in out.splitlines()
               if ln.lower().startswith("location:")][0]
        if loc.startswith("/"):
            loc = self.reg.url + loc
        sep = "&" if "?" in loc else "?"
        subprocess.run([B.CURL, "-sS", "--fail-with-body", "-H", "Expect:", "-X", "PUT",
                        "-H", "Content-Type: application/octet-stream", "-T", path,
                        "-o", "/dev/null", "%s%sdigest=%s" % (loc, sep, digest)], check=True)
        U.UploadBench.verify(self.reg, repo, digest, os.path.getsize(path))

    def push_layout(self, layout, repo):
        ref = "%s/%s:latest" % (self.reg.host, repo)
        subprocess.run([paths.SKOPEO, "copy", "-q", "--dest-tls-verify=false",
                        "--preserve-digests", "oci:%s:%s" % (layout.path, B.REF_NAME),
                        "docker://" + ref], check=True, stdout=subprocess.DEVNULL)
        B.verify_push(self.reg, repo, layout)
        return ref

    # -- a: ReadBlob ---------------------------------------------------------------
    def part_a(self):
        size = self.args.size_mib * MiB
        path = os.path.join(self.cache_root, "read-blob-%dMiB.bin" % self.args.size_mib)
        log("making %s" % path)
        digest = U.make_file(path, size, "regd-read-blob-%d" % self.args.size_mib)
        repo = "bench/read"
        self.push_blob(repo, path, digest)
        url = "%s/v2/%s/blobs/%s" % (self.reg.url, repo, digest)
        target = "%s/%s" % (self.reg.host, repo)
        out_file = os.path.join(self.workdir, "read-out.bin")
        hexd = digest.split(":", 1)[1]

        def check_openssl(stdout):
            got = stdout.decode().strip().rsplit(" ", 1)[-1]
            if got != hexd:
                raise RuntimeError("curl | openssl: sha256 %s, want %s" % (got, hexd))

        def check_file():
            n = os.path.getsize(out_file)
            os.unlink(out_file)
            if n != size:
                raise RuntimeError("wrote %d bytes, want %d" % (n, size))

        # (label, argv builder given the daemon, check of stdout, after)
        methods = [
            ("curl | openssl dgst (verified floor)",
             lambda d: ["sh", "-c", "%s -sS --fail %s | openssl dgst -sha256" % (B.CURL, url)],
             check_openssl, None),
            ("curl -o /dev/null (unverified)",
             lambda d: [B.CURL, "-sS", "--fail", "-o", "/dev/null", url], None, None),
            ("regd read-blob -o /dev/null (verified)",
             lambda d: self.go(d, "read-blob", target, digest, "-o", "/dev/null"), None, None),
            ("regd read-blob -no-verify -o /dev/null (verified by regd)",
             lambda d: self.go(d, "read-blob", "-no-verify", target, digest, "-o", "/dev/null"),
             None, None),
        ]
        if self.args.window:
            methods.append((
                "regd read-blob -window %d -o /dev/null" % self.args.window,
                lambda d: [GO_CLIENT, "-addr", d.address, "-window", str(self.args.window),
                           "read-blob", target, digest, "-o", "/dev/null"], None, None))
        if self.args.to_file:
            methods += [
                ("curl -o FILE (unverified)",
                 lambda d: [B.CURL, "-sS", "--fail", "-o", out_file, url], None, check_file),
                ("regd read-blob -o FILE (verified)",
                 lambda d: self.go(d, "read-blob", target, digest, "-o", out_file), None,
                 check_file),
            ]
        d = self.new_daemon()
        per = {m[0]: [] for m in methods}
        try:
            # Untimed: one read each way warms the registry and the daemon.
            for _, argv, check, after in methods:
                timed(argv(d), self.workdir)
                if after:
                    after()
            for i in range(self.args.runs):
                for label, argv, check, after in methods:
                    os.sync()
                    c0, r0 = cpu(d.proc.pid), cpu(self.reg.proc.pid)
                    wall, ccpu, out, _ = timed(argv(d), self.workdir)
                    r = Run(wall=wall, client_cpu=ccpu, regd_cpu=cpu(d.proc.pid) - c0,
                            registry_cpu=cpu(self.reg.proc.pid) - r0)
                    if check:
                        check(out)
                    if after:
                        after()
                    per[label].append(r)
                    log("a run %d/%d %-42s %.2f s  %.2f GB/s  regd cpu %.2f s  client cpu %.2f s"
                        % (i + 1, self.args.runs, label, wall, size / wall / 1e9, r.regd_cpu,
                           ccpu))
        finally:
            self.stop_daemon(d, "part a")
        return Run(size=size, digest=digest, per=per, methods=[m[0] for m in methods])

    # -- b: unary rates ------------------------------------------------------------
    def part_b(self):
        layout = B.build_layout(self.cache_root, 4)
        repo = "bench/meta"
        tag_ref = self.push_layout(layout, repo)
        digest_ref = "%s/%s@%s" % (self.reg.host, repo, layout.manifest_digest)
        base = "%s/v2/%s" % (self.reg.url, repo)
        secs, warm, conc = self.args.unary_seconds, "1s", self.args.concurrency
        dur = "%gs" % secs

        def peer(method, *urls):
            argv = [self.peer, "head-rate", "--method", method, "--concurrency", str(conc),
                    "--duration", dur, "--warmup", warm]
            for u in urls:
                argv += ["--url", u]
            return argv, "rounds_per_second"

        def hammer(rpc, ref):
            return (lambda d: self.go(d, "hammer", "-rpc", rpc, "-ref", ref, "-concurrency",
                                      str(conc), "-duration", dur, "-warmup", warm),
                    "calls_per_second")

        methods = [
            ("direct HEAD manifest by tag", peer("HEAD", base + "/manifests/latest")),
            ("regd Exists (tag)", hammer("exists", tag_ref)),
            ("regd GetDescriptor (tag)", hammer("descriptor", tag_ref)),
            ("direct GET manifest by digest + GET config (pairs)",
             peer("GET", base + "/manifests/" + layout.manifest_digest,
                  base + "/blobs/" + layout.config["digest"])),
            ("regd Inspect (digest ref)", hammer("inspect", digest_ref)),
        ]
        d = self.new_daemon()
        per = {m[0]: [] for m in methods}
        errors = []
        try:
            for i in range(self.args.runs):
                for label, (argv, key) in methods:
                    argv = argv(d) if callable(argv) else argv
                    c0, r0 = cpu(d.proc.pid), cpu(self.reg.proc.pid)
                    try:
                        wall, ccpu, out, _ = timed(argv, self.workdir)
                    except CommandError as e:
                        # Recorded, not fatal: a daemon that dies under load is a result.
                        died = d.proc.poll()
                        msg = "run %d, %s: %s%s" % (
                            i + 1, label, str(e).splitlines()[-1][:200],
                            "; regd died (exit status %s)" % died if died is not None else "")
                        log("b " + msg)
                        errors.append(msg)
                        if died is not None:
                            self.stop_daemon(d, "part b (dead)")
                            d = self.new_daemon()
                        continue
                    res = json.loads(out)
                    # CPU over the whole process (warm-up included): per second of wall
                    r = Run(rate=res[key], regd_cpu=(cpu(d.proc.pid) - c0) / wall,
                            registry_cpu=(cpu(self.reg.proc.pid) - r0) / wall,
                            client_cpu=ccpu / wall)
                    per[label].append(r)
                    log("b run %d/%d %-52s %8.0f /s  cpu/s: regd %.2f registry %.2f client %.2f"
                        % (i + 1, self.args.runs, label, r.rate, r.regd_cpu, r.registry_cpu,
                           r.client_cpu))
        finally:
            self.stop_daemon(d, "part b")
        return Run(per=per, methods=[m[0] for m in methods], tag_ref=tag_ref,
                   digest_ref=digest_ref, errors=errors)

    # -- c: pull -------------------------------------------------------------------
    def check_pull(self, dir_, layout, label):
        with open(os.path.join(dir_, "index.json")) as f:
            index = json.load(f)
        digests = [m.get("digest") for m in index.get("manifests", [])]
        if layout.manifest_digest not in digests:
            raise RuntimeError("%s: index.json names %s, want %s"
                               % (label, digests, layout.manifest_digest))
        with open(layout.blob_path(layout.manifest_digest).replace(
                layout.path, dir_, 1), "rb") as f:
            if f.read() != layout.manifest_bytes:
                raise RuntimeError("%s: the manifest blob differs" % label)
        for b in layout.blobs:
            p = layout.blob_path(b["digest"]).replace(layout.path, dir_, 1)
            if os.path.getsize(p) != b["size"]:
                raise RuntimeError("%s: %s has %d bytes, want %d"
                                   % (label, p, os.path.getsize(p), b["size"]))

    def part_c(self):
        layout = B.build_layout(self.cache_root, self.args.pull_size_mib)
        repo = "bench/pull"
        ref = self.push_layout(layout, repo)
        counter = iter(range(1 << 30))

        def fresh_dir():
            p = os.path.join(self.pull_root, "pull-%d" % next(counter))
            os.makedirs(p)
            return p

        def regd(dir_):
            d = self.new_daemon()
            try:
                c0 = cpu(d.proc.pid)
                wall, ccpu, out, err = timed(self.go(d, "pull", ref, "-layout", dir_,
                                                     "-concurrency", "4"), self.workdir)
                return wall, ccpu, cpu(d.proc.pid) - c0
            finally:
                self.stop_daemon(d, "regd pull")

        def skopeo(dir_):
            wall, ccpu, _, _ = timed([paths.SKOPEO, "copy", "-q", "--src-tls-verify=false",
                                      "docker://" + ref, "oci:%s:latest" % dir_], self.workdir)
            return wall, ccpu, None

        def crane(fsync):
            def run(dir_):
                argv = [self.peer, "crane-pull", "--registry", self.reg.host, "--repo", repo,
                        "--ref", "latest", "--dir", dir_, "--jobs", "4"]
                wall, ccpu, _, _ = timed(argv + (["--fsync"] if fsync else []), self.workdir)
                return wall, ccpu, None
            return run

        methods = [("regd PullImage", regd), ("skopeo copy", skopeo),
                   ("crane-like (peer)", crane(False)),
                   ("crane-like (peer) --fsync", crane(True))]
        # Untimed warm-up.
        for label, fn in methods:
            dir_ = fresh_dir()
            fn(dir_)
            self.check_pull(dir_, layout, label)
            shutil.rmtree(dir_)
        per = {m[0]: [] for m in methods}
        for i in range(self.args.runs):
            for label, fn in methods:
                dir_ = fresh_dir()
                os.sync()
                r0 = cpu(self.reg.proc.pid)
                wall, ccpu, regd_cpu = fn(dir_)
                r = Run(wall=wall, client_cpu=ccpu, regd_cpu=regd_cpu,
                        registry_cpu=cpu(self.reg.proc.pid) - r0)
                self.check_pull(dir_, layout, label)
                shutil.rmtree(dir_)
                per[label].append(r)
                log("c run %d/%d %-28s %.2f s  client cpu %.2f s  regd cpu %s"
                    % (i + 1, self.args.runs, label, wall, ccpu,
                       "-" if regd_cpu is None else "%.2f s" % regd_cpu))
        os.sync()
        return Run(per=per, methods=[m[0] for m in methods], size=layout.total_size,
                   layers=len(layout.layers))


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

def med(rs, key):
    vals = [getattr(r, key) for r in rs]
    if not vals or any(v is None for v in vals):
        return None
    return statistics.median(vals)


def fmt(v, spec="%.2f"):
    return "-" if v is None else spec % v


def cell(label):
    """A method name as a markdown table cell."""
    return label.replace("|", "\\|")


def verdict(ok):
    return "PASS" if ok else "FAIL"


def render_a(args, a):
    L = []
    add = L.append
    add("### a. ReadBlob: one %.0f MiB blob, median of %d run(s)" % (a.size / MiB, args.runs))
    add("")
    add("| method | wall s | GB/s | client CPU s | regd CPU s | registry CPU s |")
    add("| --- | ---: | ---: | ---: | ---: | ---: |")
    for m in a.methods:
        rs = a.per[m]
        w = med(rs, "wall")
        regd = med(rs, "regd_cpu") if m.startswith("regd") else None
        add("| %s | %.2f | %.2f | %.2f | %s | %.2f |" % (
            cell(m), w, a.size / w / 1e9, med(rs, "client_cpu"), fmt(regd),
            med(rs, "registry_cpu")))
    floor = med(a.per[a.methods[0]], "wall")
    both = floor / med(a.per[a.methods[2]], "wall")  # rates: regd / floor
    ratio = floor / med(a.per[a.methods[3]], "wall")
    add("")
    add("| target | measured | result |")
    add("| --- | ---: | :---: |")
    add("| regd read-blob rate (regd verifies) >= %.1f x verified floor | %.2f x | %s |"
        % (TARGET_READ, ratio, verdict(ratio >= TARGET_READ)))
    add("| (for the record) regd and the client both verify | %.2f x | - |" % both)
    add("")
    add("Per run (wall s / regd CPU s): " + "; ".join(
        "%s: %s" % (m, ", ".join("%.2f / %s" % (r.wall, fmt(r.regd_cpu)) for r in a.per[m]))
        for m in a.methods if m.startswith("regd")))
    return L


def render_b(args, b):
    L = []
    add = L.append
    add("### b. Unary rates: %d concurrent callers, %g s each, median of %d run(s)"
        % (args.concurrency, args.unary_seconds, args.runs))
    add("")
    add("| method | per s | regd CPU/s | registry CPU/s | client CPU/s |")
    add("| --- | ---: | ---: | ---: | ---: |")
    for m in b.methods:
        rs = b.per[m]
        add("| %s | %s | %s | %s | %s |" % (
            m, fmt(med(rs, "rate"), "%.0f"), fmt(med(rs, "regd_cpu")),
            fmt(med(rs, "registry_cpu")), fmt(med(rs, "client_cpu"))))
    rate = {m: med(b.per[m], "rate") for m in b.methods}
    head, ex, gd, pair, insp = (rate[m] for m in b.methods)
    add("")
    add("| target | measured | result |")
    add("| --- | ---: | :---: |")
    for label, a, z, t in (("Exists >= %.1f x direct HEAD" % TARGET_HEAD, ex, head, TARGET_HEAD),
                           ("GetDescriptor >= %.1f x direct HEAD" % TARGET_HEAD, gd, head,
                            TARGET_HEAD),
                           ("digest Inspect >= %.0f x direct GET pairs" % TARGET_INSPECT,
                            insp, pair, TARGET_INSPECT)):
        if a is None or not z:
            add("| %s | - | FAIL (calls failed) |" % label)
        else:
            add("| %s | %.2f x | %s |" % (label, a / z, verdict(a / z >= t)))
    add("")
    if b.errors:
        add("Failed measurements (left out of the medians): " + "; ".join(b.errors))
        add("")
    add("CPU columns: CPU seconds per second of the client process's life (1 s warm-up "
        "included); 2.00 is both cores. Per run (per s): " + "; ".join(
            "%s: %s" % (m, ", ".join("%.0f" % r.rate for r in b.per[m])) for m in b.methods))
    return L


def render_c(args, c):
    L = []
    add = L.append
    add("### c. Pull: a %.0f MiB image (%d layers + config) into an empty OCI layout, "
        "median of %d run(s)" % (c.size / MiB, c.layers, args.runs))
    add("")
    add("| method | wall s | GB/s | client CPU s | regd CPU s | registry CPU s |")
    add("| --- | ---: | ---: | ---: | ---: | ---: |")
    for m in c.methods:
        rs = c.per[m]
        w = med(rs, "wall")
        add("| %s | %.2f | %.2f | %.2f | %s | %.2f |" % (
            m, w, c.size / w / 1e9, med(rs, "client_cpu"), fmt(med(rs, "regd_cpu")),
            med(rs, "registry_cpu")))
    w = {m: med(c.per[m], "wall") for m in c.methods}
    regd, sk, cr, crf = (w[m] for m in c.methods)
    add("")
    add("| target | measured | result |")
    add("| --- | ---: | :---: |")
    add("| regd wall <= %.1f x skopeo | %.2f x | %s |"
        % (TARGET_PULL_SKOPEO, regd / sk, verdict(regd / sk <= TARGET_PULL_SKOPEO)))
    add("| regd wall <= crane-like | %.2f x | %s |" % (regd / cr, verdict(regd / cr <= 1.0)))
    add("| (reference) regd wall / crane-like --fsync | %.2f x | - |" % (regd / crf))
    add("")
    add("Per run (wall s): " + "; ".join(
        "%s: %s" % (m, ", ".join("%.2f" % r.wall for r in c.per[m])) for m in c.methods))
    return L


def render(args, a, b, c, notes):
    L = []
    for part, fn in ((a, render_a), (b, render_b)):
        if part is not None:
            L += fn(args, part) + [""]
    if "c" in args.parts:
        L += render_c(args, c) + [""]
    L.append(notes)
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="regd read benchmark (see the module docstring)")
    p.add_argument("--regd-flag", action="append", default=[],
                   help="a flag for every daemon, e.g. --regd-flag=--access_log_level=debug "
                   "(repeatable)")
    p.add_argument("--parts", default="a,b,c", help="which parts: a ReadBlob, b unary rates, "
                   "c pull (default a,b,c)")
    p.add_argument("--runs", type=int, default=3, help="runs per method; median (default 3)")
    p.add_argument("--size-mib", type=int, default=1024, help="a: blob size (default 1024)")
    p.add_argument("--pull-size-mib", type=int, default=1024,
                   help="c: image size, 4 layers (default 1024)")
    p.add_argument("--unary-seconds", type=float, default=10, help="b: seconds per rate (10)")
    p.add_argument("--concurrency", type=int, default=16, help="b: callers (16)")
    p.add_argument("--to-file", action="store_true",
                   help="a: also curl and read-blob into a file (the run's temp dir)")
    p.add_argument("--window", type=int, default=0,
                   help="a: also read-blob with the Go client's -window BYTES")
    p.add_argument("--no-build", action="store_true",
                   help="use the existing client-examples/go/regd-example")
    p.add_argument("--out", help="also write the tables (markdown) to this file")
    a = p.parse_args(argv)
    a.parts = set(x.strip() for x in a.parts.split(",") if x.strip())
    if not a.parts <= {"a", "b", "c"} or a.runs < 1 or a.size_mib < 1 or a.pull_size_mib < 4:
        p.error("--parts is a subset of a,b,c; --runs >= 1, --size-mib >= 1, "
                "--pull-size-mib >= 4")
    return a


def build_tools(args, workdir):
    if not args.no_build:
        res = subprocess.run([os.path.join(GO_DIR, "build.sh")], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        if res.returncode != 0:
            sys.exit("bench: client-examples/go/build.sh failed:\n" + res.stdout.decode())
    if not os.access(GO_CLIENT, os.X_OK):
        sys.exit("bench: no Go example at %s (run client-examples/go/build.sh)" % GO_CLIENT)
    # The peer has no dependencies: plain `go build`, offline, its own cache.
    env = dict(os.environ, GO111MODULE="on", GOFLAGS="", GOPROXY="off", CGO_ENABLED="0")
    env.setdefault("GOCACHE", os.path.join(workdir, "gocache"))
    res = subprocess.run(["go", "build", "-o", os.path.join(workdir, "peer"), "."],
                         cwd=PEER_SRC, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        sys.exit("bench: building bench/peer failed:\n" + res.stdout.decode())


def main(argv):
    args = parse_args(argv)
    B.exit_cleanly_on_signals()
    missing = [t for t in (paths.REGISTRY_BIN, B.TIME_BIN, paths.regd_bin())
               if not os.access(t, os.X_OK)]
    missing += [t for t in (paths.SKOPEO, B.CURL, "openssl", "go") if shutil.which(t) is None]
    if missing:
        sys.exit("bench: missing %s (apt-get install docker-registry skopeo curl openssl time "
                 "golang-go; build regd or set REGD_BIN)" % ", ".join(missing))
    cache_root = os.environ.get("BENCH_DIR") or os.path.join(tempfile.gettempdir(),
                                                             "regd-bench-cache")
    os.makedirs(cache_root, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="read-", dir=cache_root)
    bench = None
    try:
        build_tools(args, workdir)
        src_bin = paths.regd_bin()
        bin_copy = os.path.join(workdir, "regd")
        shutil.copy2(src_bin, bin_copy)
        with open(bin_copy, "rb") as f:
            bin_sha = hashlib.sha256(f.read()).hexdigest()[:12]
        os.environ["REGD_BIN"] = bin_copy
        notes = ("regd binary: %s (mtime %s UTC, sha256 %s...); load average at the start %s"
                 % (src_bin, datetime.datetime.utcfromtimestamp(os.path.getmtime(src_bin))
                    .strftime("%Y-%m-%d %H:%M"), bin_sha, U.loadavg()))
        bench = ReadBench(args, workdir, cache_root)
        bench.start_registry()
        a = bench.part_a() if "a" in args.parts else None
        b = bench.part_b() if "b" in args.parts else None
        c = bench.part_c() if "c" in args.parts else None
        notes += ", at the end %s." % U.loadavg()
        text = render(args, a, b, c, notes)
        sys.stdout.write(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write("<!-- bench/run.sh --read %s, %s UTC -->\n\n" % (
                    " ".join(argv), datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")))
                f.write(text)
        return 0
    finally:
        if bench is not None and bench.reg is not None:
            bench.reg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
