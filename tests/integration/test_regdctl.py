#!/usr/bin/python3
"""Integration tests for regdctl, the command-line client, against the real daemon.

Run:  REGD_BIN=build/server/regd REGDCTL_BIN=build/cli/regdctl \\
        /usr/bin/python3 tests/integration/test_regdctl.py [-k name]

One docker-registry 2.8 (no auth) with a fixtures/fault_proxy.py in front of it,
a second one with htpasswd auth (per-call credentials), and one daemon with
--chunk_size=2MiB (a 6 MiB layer goes up in three PATCHes).

- Progress on a terminal: a push through the fault proxy (bodies throttled to
  3 MiB/s, one PATCH answered 503) run with stderr on a pseudo-terminal. The
  capture must hold ANSI redraws of per-blob lines with percent, rate and ETA,
  the retry notice and the summary; at most ~10 frames a second; replayed
  through a small terminal model, the final screen holds each blob once
  (uploaded), the retry line and the summary, and no live line is left over.
- The same push with stderr on a pipe: plain lines, no escape byte, at most one
  progress line per blob per second, the retry, each outcome, the summary.
- -o json for every command parses as one JSON object (push: the manifest
  digest the registry serves).
- Exit statuses: NOT_FOUND 5 (missing tag), INVALID_ARGUMENT 3 (bad reference),
  usage 2, `exists` false 5, UNAVAILABLE 14 (no daemon); one error line.
- read-blob: whole, --offset resume into a file, --offset to stdout, a file
  whose prefix is wrong (DATA_LOSS).
- read-blob through a response cut part-way (the proxy's reset_response): the
  retry on stderr (escaped), the blob intact, `retries` in the JSON result.
- pull (PullImage into an OCI layout on the daemon's side): a relative --layout
  made absolute, index.json naming the tag, every blob file hashing to its name,
  plain progress lines and the summary; -o json (downloaded, then existed);
  an index without --platform is FAILED_PRECONDITION (9), with --platform or
  --all-platforms it works; a layout outside --allowed_paths is refused;
  a cut download is retried and shown.
- upload (UploadBlob from a local file): UPLOADED, EXISTED with no byte sent,
  and through a 503 (a second send_from, the blob intact).
- push --upload (files the daemon cannot read), write-layer, descriptor, image,
  push-index with platforms, health, --registry-auth-from-docker-config and
  --registry-user on an htpasswd registry.
"""

import fcntl
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fixtures import images, paths, testing, util  # noqa: E402
from fixtures.certs import make_ca, make_leaf  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.fault_proxy import FaultProxy  # noqa: E402
from fixtures.registry import Registry  # noqa: E402

MiB = 1 << 20
CHUNK = 2 * MiB        # the daemon's --chunk_size
LAYER = 6 * MiB        # three PATCHes each
RATE = 3 * MiB         # the proxy's throttle on PATCH bodies, bytes/s
T = 120                # seconds a regdctl run may take
USER = ("ctl-user", "ctl-secret")

ENV = None
REG = None
AREG = None
PROXY = None
D = None
ALLOWED = None
OUTSIDE = None
REGDCTL = None

ESC = "\x1b"
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PERCENT_RE = re.compile(r"\b\d{1,3}%")
RATE_RE = re.compile(r"\d+(\.\d+)? (B|KiB|MiB|GiB)/s")
SUMMARY_RE = re.compile(r"(\d+) blobs? \(([^)]*)\): .* transferred in .*/s")


def setUpModule():
    global ENV, REG, AREG, PROXY, D, ALLOWED, OUTSIDE, REGDCTL
    REGDCTL = paths.regdctl_bin()
    if not os.access(REGDCTL, os.X_OK):
        raise RuntimeError("regdctl not found at %s (build it or set REGDCTL_BIN)" % REGDCTL)
    ENV = testing.Env(prefix="regd-ctl-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    ALLOWED = os.path.join(ENV.workdir, "allowed")
    OUTSIDE = os.path.join(ENV.workdir, "outside")
    os.makedirs(ALLOWED)
    os.makedirs(OUTSIDE)
    REG = ENV.enter(Registry(ENV.workdir, auth="none"), "registry")
    AREG = ENV.enter(Registry(ENV.workdir, auth="basic", users=dict([USER])), "registry-basic")
    PROXY = ENV.enter(FaultProxy(REG.host))
    D = ENV.enter(Daemon(ENV.workdir, insecure_registries=[REG.host, PROXY.host, AREG.host],
                         allowed_paths=[ALLOWED], extra_args=["--chunk_size=%d" % CHUNK]),
                  "regd")


# -- running regdctl ---------------------------------------------------------------------------

class Run:
    """One finished regdctl run: rc, stdout (bytes), err (text: stderr or the pty capture),
    seconds; frames: [(time, bytes)] read from the pty."""

    def __init__(self, cmd, rc, stdout, err, seconds, frames=()):
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.err = err
        self.seconds = seconds
        self.frames = list(frames)

    @property
    def out(self):
        return self.stdout.decode("utf-8", "replace")

    def json(self):
        text = self.out
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) == 1, "want one JSON line on stdout, got %r" % text
        return json.loads(lines[0])

    def __repr__(self):
        return "regdctl %s -> rc=%s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            " ".join(self.cmd[1:]), self.rc, self.out[:3000], self.err[-6000:])


def command(args, addr=True):
    cmd = [REGDCTL]
    if addr:
        cmd += ["--addr", D.target]
    return cmd + list(args)


def ctl(*args, env=None, addr=True, stdout=subprocess.PIPE, cwd=None):
    cmd = command(args, addr)
    full_env = dict(os.environ)
    full_env.pop("REGD_ADDR", None)
    full_env.update(env or {})
    t0 = time.monotonic()
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                         env=full_env, timeout=T, cwd=cwd)
    return Run(cmd, res.returncode, res.stdout or b"", res.stderr.decode("utf-8", "replace"),
               time.monotonic() - t0)


def ctl_pty(*args, cols=120, rows=40):
    """regdctl with stderr on a pseudo-terminal (stdout a pipe); the pty's bytes are captured."""
    cmd = command(args)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = dict(os.environ, TERM="xterm")
    frames = []

    def pump():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed the slave side
                return
            if not data:
                return
            frames.append((time.monotonic(), data))

    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                            env=env)
    util.track(proc)
    os.close(slave)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=T)
    finally:
        if proc.poll() is None:
            proc.kill()
        util.untrack(proc)
    seconds = time.monotonic() - t0
    reader.join(10)
    os.close(master)
    err = b"".join(d for _, d in frames).decode("utf-8", "replace")
    return Run(cmd, proc.returncode, out, err, seconds, frames)


def screen_after(capture):
    """The text a terminal shows after `capture` (scrollback included): a small model of
    what regdctl uses (CR, LF, ESC[nA, ESC[2K, ESC[J) and of plain text."""
    lines = [""]
    row = col = 0
    i = 0
    while i < len(capture):
        m = ANSI_RE.match(capture, i)
        if m:
            seq = m.group(0)
            final, arg = seq[-1], seq[2:-1]
            if final == "A":
                row = max(0, row - int(arg or "1"))
            elif final == "K":
                lines[row] = ""
                col = 0
            elif final == "J":
                lines[row] = lines[row][:col]
                del lines[row + 1:]
            i = m.end()
            continue
        c = capture[i]
        i += 1
        if c == "\r":
            col = 0
        elif c == "\n":
            row += 1
            col = 0
            while len(lines) <= row:
                lines.append("")
        else:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + c + line[col + 1:]
            col += 1
    return [line for line in lines if line.strip()]


# -- content -----------------------------------------------------------------------------------

_seq = [0]


def uniq(name):
    _seq[0] += 1
    return "%s-%d" % (name, _seq[0])


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write(dir_path, name, data):
    path = os.path.join(dir_path, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def image_files(dir_path, name, layer_sizes):
    """Config and gzip'd tar layers of a fresh image in dir_path: (config_path, [layer paths],
    config bytes, [layer bytes])."""
    layers = [images.make_layer("%s-%d" % (name, i), size=s) for i, s in enumerate(layer_sizes)]
    config = images.make_config({"name": name}, diff_ids=[d for _, d in layers])
    cpath = write(dir_path, name + "-config.json", config.data)
    lpaths = [write(dir_path, "%s-layer%d.tar.gz" % (name, i), b.data)
              for i, (b, _) in enumerate(layers)]
    return cpath, lpaths, config.data, [b.data for b, _ in layers]


def registry_manifest_digest(reg_url, repo, tag):
    accept = ",".join([images.OCI_MANIFEST, images.OCI_INDEX, images.DOCKER_MANIFEST,
                       images.DOCKER_LIST])
    status, headers, _ = util.http_get("%s/v2/%s/manifests/%s" % (reg_url, repo, tag),
                                       headers={"Accept": accept}, method="HEAD")
    return status, headers.get("Docker-Content-Digest")


def registry_blob(repo, digest):
    status, _, body = util.http_get("%s/v2/%s/blobs/%s" % (REG.url, repo, digest))
    return status, body


def push_faults(repo):
    """The push tests' faults on `repo`: the second PATCH answers 503 (one retry), and every
    other PATCH body goes at RATE (so the transfer lasts long enough to draw)."""
    uploads = r"^/v2/%s/blobs/uploads/" % re.escape(repo)
    f503 = PROXY.add_fault("status", method="PATCH", path=uploads, nth=2, times=1, status=503)
    slow = PROXY.add_fault("throttle", method="PATCH", path=uploads, times=None, rate=RATE)
    return [f503, slow]


class CtlCase(testing.IntegrationCase):
    def assertRc(self, run, rc):
        self.assertEqual(run.rc, rc, run)

    def assertErrorLine(self, run, code, only=False):
        """The error is one line, the last on stderr (after any progress output); with
        only, nothing else is on stderr."""
        lines = [line for line in run.err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("regdctl:")]
        self.assertEqual(len(errors), 1, "want one error line: %r" % run)
        self.assertTrue(lines and lines[-1] == errors[0], run)
        self.assertTrue(errors[0].startswith("regdctl: %s: " % code), run)
        if only:
            self.assertEqual(len(lines), 1, "want only the error line: %r" % run)
        return errors[0]


# -- progress ----------------------------------------------------------------------------------

class ProgressTest(CtlCase):
    def _push(self, repo, runner):
        cfg, layers, _, layer_bytes = image_files(ALLOWED, repo, (LAYER, LAYER))
        faults = push_faults(repo)
        try:
            args = ["push", "%s/%s:v1" % (PROXY.host, repo), "--config", cfg,
                    "--layer", layers[0], "--layer", layers[1],
                    "--retry-delay", "0.3s", "--max-attempts", "5"]
            run = runner(*args)
        finally:
            for f in faults:
                PROXY.remove_fault(f)
        self.assertRc(run, 0)
        self.assertEqual(faults[0].fired, 1, "the 503 fault did not fire: %r" % run)
        status, digest = registry_manifest_digest(REG.url, repo, "v1")
        self.assertEqual(status, 200)
        self.assertIn("digest:", run.out)
        self.assertIn(digest, run.out)
        shorts = [sha256(b)[7:19] for b in layer_bytes]
        return run, shorts

    def test_terminal_push_draws_bars_retry_and_summary(self):
        run, shorts = self._push(uniq("ctl-tty"), ctl_pty)
        cap = run.err
        self.assertIn(ESC + "[", cap, "no ANSI escapes on a terminal: %r" % run)
        self.assertRegex(cap, r"\x1b\[\d+A", "no cursor-up redraw: %r" % run)
        # Live per-blob lines: the layer's short digest, a bar, bytes/total, percent, rate, ETA.
        segments = re.split(r"\x1b\[2K", cap)
        for short in shorts:
            live = [s for s in segments if short in s and "%" in s]
            self.assertTrue(live, "no progress line for %s: %r" % (short, run))
            self.assertTrue(any(RATE_RE.search(s) and "ETA" in s and PERCENT_RE.search(s)
                                and " / " in s and "[" in s for s in live),
                            "no line with bar, bytes, percent, rate and ETA for %s: %r"
                            % (short, live[:5]))
        self.assertRegex(cap, r"retry 1/5 in 0\.3s: .*503", run)
        # At most ~10 frames a second (cursor-up starts every redraw but the first).
        frames = len(re.findall(r"\x1b\[\d+A", cap))
        self.assertGreater(frames, 3, run)
        self.assertLessEqual(frames, run.seconds * 10 + 3,
                             "%d redraws in %.1fs" % (frames, run.seconds))
        # What the terminal shows at the end: each blob's final line once, the retry, the
        # summary last, no live line left.
        screen = screen_after(cap)
        for short in shorts:
            done = [line for line in screen if short in line]
            self.assertEqual(len([line for line in done if "uploaded in" in line]), 1, screen)
        self.assertFalse([line for line in screen if "ETA" in line], screen)
        self.assertTrue(any("retry 1/5" in line for line in screen), screen)
        m = SUMMARY_RE.search(screen[-1])
        self.assertTrue(m, "last line is not the summary: %r" % screen)
        self.assertEqual(m.group(1), "3")
        self.assertIn("uploaded", m.group(2))
        self.assertIn("1 retry", screen[-1])

    def test_plain_push_prints_steady_lines_without_escapes(self):
        run, shorts = self._push(uniq("ctl-plain"), ctl)
        self.assertNotIn(ESC, run.err, run)
        lines = run.err.splitlines()
        for short in shorts:
            progress = [line for line in lines if short in line and PERCENT_RE.search(line)]
            self.assertTrue(progress, run)
            self.assertTrue(any(RATE_RE.search(line) for line in progress), progress)
            # One a second at most (plus the first).
            self.assertLessEqual(len(progress), run.seconds + 2, progress)
            self.assertEqual(len([line for line in lines if short in line and "uploaded in" in line]),
                             1, run)
        self.assertEqual(len([line for line in lines if re.search(r"retry 1/5 in 0\.3s: .*503",
                                                                  line)]), 1, run)
        self.assertRegex(lines[-1], SUMMARY_RE, run)
        self.assertIn("1 retry", lines[-1])

    def test_quiet_prints_no_progress(self):
        repo = uniq("ctl-quiet")
        cfg, layers, _, _ = image_files(ALLOWED, repo, (1000,))
        run = ctl("-q", "push", "%s/%s:v1" % (REG.host, repo), "--config", cfg, "--layer", layers[0])
        self.assertRc(run, 0)
        self.assertEqual(run.err, "", run)


# -- JSON output -------------------------------------------------------------------------------

class JsonTest(CtlCase):
    def test_push_json_has_manifest_digest(self):
        repo = uniq("ctl-json")
        cfg, layers, cfg_bytes, layer_bytes = image_files(ALLOWED, repo, (3000, 5000))
        run = ctl("-o", "json", "push", "%s/%s:v1" % (REG.host, repo), "--config", cfg,
                  "--layer", layers[0], "--layer", layers[1])
        self.assertRc(run, 0)
        obj = run.json()
        status, digest = registry_manifest_digest(REG.url, repo, "v1")
        self.assertEqual(status, 200)
        self.assertEqual(obj["descriptor"]["digest"], digest)
        self.assertEqual(obj["descriptor"]["media_type"], images.OCI_MANIFEST)
        self.assertEqual(obj["ref"], "%s/%s:v1" % (REG.host, repo))
        blobs = {b["digest"]: b for b in obj["blobs"]}
        for data in [cfg_bytes] + layer_bytes:
            self.assertEqual(blobs[sha256(data)]["outcome"], "uploaded")
            self.assertEqual(blobs[sha256(data)]["size"], len(data))
        # Again: everything EXISTED, the same digest.
        again = ctl("--output=json", "push", "%s/%s:v1" % (REG.host, repo), "--config", cfg,
                    "--layer", layers[0], "--layer", layers[1]).json()
        self.assertEqual(again["descriptor"]["digest"], digest)
        self.assertEqual({b["outcome"] for b in again["blobs"]}, {"existed"})

        # The read commands on what was pushed.
        ref = "%s/%s:v1" % (REG.host, repo)
        inspect = ctl("inspect", ref, "-o", "json")
        self.assertRc(inspect, 0)
        self.assertEqual(inspect.json()["digest"], digest)
        self.assertEqual(inspect.json()["layers"], [sha256(b) for b in layer_bytes])
        self.assertEqual(inspect.json()["labels"], {"name": repo})
        desc = ctl("descriptor", ref, "-o", "json").json()
        self.assertEqual(desc["digest"], digest)
        image = ctl("image", ref, "-o", "json").json()
        self.assertEqual(image["descriptor"]["digest"], digest)
        self.assertEqual([layer["size"] for layer in image["layers"]], [len(b) for b in layer_bytes])
        raw = ctl("image", ref, "--raw", "config")
        self.assertEqual(raw.stdout, cfg_bytes)
        self.assertEqual(ctl("exists", ref, "-o", "json").json(), {"exists": True})
        text = ctl("inspect", ref)
        self.assertRc(text, 0)
        self.assertRegex(text.out, r"digest:\s+%s" % digest)

    def test_push_index_with_platforms(self):
        repo = uniq("ctl-index")
        host_repo = "%s/%s" % (REG.host, repo)
        digests = {}
        for arch in ("amd64", "arm64"):
            cfg, layers, _, _ = image_files(ALLOWED, "%s-%s" % (repo, arch), (1000,))
            run = ctl("-o", "json", "push", "%s:%s" % (host_repo, arch), "--config", cfg,
                      "--layer", layers[0])
            self.assertRc(run, 0)
            digests[arch] = run.json()["descriptor"]["digest"]
        run = ctl("-o", "json", "push-index", host_repo + ":multi",
                  "--manifest", "amd64@linux/amd64", "--manifest", digests["arm64"] + "@linux/arm64/v8")
        self.assertRc(run, 0)
        status, digest = registry_manifest_digest(REG.url, repo, "multi")
        self.assertEqual(run.json()["digest"], digest)
        got = ctl("-o", "json", "inspect", host_repo + ":multi").json()
        plats = {(m["os"], m["architecture"], m["variant"]): m["digest"] for m in got["manifests"]}
        self.assertEqual(plats, {("linux", "amd64", ""): digests["amd64"],
                                 ("linux", "arm64", "v8"): digests["arm64"]})
        child = ctl("-o", "json", "inspect", host_repo + ":multi", "--platform", "linux/arm64").json()
        self.assertEqual(child["digest"], digests["arm64"])

    def test_write_layer_json(self):
        repo = "%s/%s" % (REG.host, uniq("ctl-wl"))
        data = os.urandom(300000)
        path = write(ALLOWED, uniq("wl") + ".bin", data)
        run = ctl("-o", "json", "write-layer", repo, path)
        self.assertRc(run, 0)
        obj = run.json()
        self.assertEqual(obj["outcome"], "UPLOADED")
        self.assertEqual(obj["descriptor"]["digest"], sha256(data))
        self.assertEqual(obj["descriptor"]["size"], len(data))
        # A file outside --allowed_paths: the daemon refuses it.
        outside = write(OUTSIDE, uniq("wl") + ".bin", data)
        run = ctl("write-layer", repo, outside)
        self.assertRc(run, 7)
        self.assertErrorLine(run, "PERMISSION_DENIED", only=True)


# -- exit statuses -----------------------------------------------------------------------------

class ExitCodeTest(CtlCase):
    def test_not_found_is_5(self):
        run = ctl("inspect", "%s/ctl-nothing/here:missing" % REG.host)
        self.assertRc(run, 5)
        line = self.assertErrorLine(run, "NOT_FOUND", only=True)
        self.assertIn("not found", line)
        self.assertEqual(run.out, "")

    def test_hostile_text_never_drives_the_terminal(self):
        # A label an image's author chose, with a terminal title escape, a C1
        # CSI and a fake line: regdctl shows them escaped, on one line.
        evil = "\x1b]0;pwned\x07x\u009b2Jy\nconfig: sha256:fake"
        img = images.build_image(uniq("evil"), {"note": evil})
        repo = uniq("ctl-evil")
        images.push(img, ENV.workdir, REG.host, repo, "v1")
        run = ctl("inspect", "%s/%s:v1" % (REG.host, repo))
        self.assertRc(run, 0)
        for bad in (b"\x1b", b"\x07", "\u009b".encode()):
            self.assertNotIn(bad, run.stdout, run)
        self.assertIn("\\x1b]0;pwned", run.out)
        self.assertNotIn("\nconfig: sha256:fake", run.out)

    def test_bad_reference_is_3(self):
        for ref in ("%s/UPPER/case:tag" % REG.host, "%s/a:bad tag" % REG.host, "%s/a@sha256:xyz" % REG.host):
            with self.subTest(ref=ref):
                run = ctl("inspect", ref)
                self.assertRc(run, 3)
                self.assertErrorLine(run, "INVALID_ARGUMENT", only=True)

    def test_exists_false_is_5_true_is_0(self):
        run = ctl("exists", "%s/ctl-nothing/here:missing" % REG.host)
        self.assertRc(run, 5)
        self.assertEqual(run.out.strip(), "false")
        self.assertEqual(run.err, "")
        repo = uniq("ctl-exists")
        cfg, layers, _, _ = image_files(ALLOWED, repo, (100,))
        self.assertRc(ctl("-q", "push", "%s/%s:v1" % (REG.host, repo), "--config", cfg,
                          "--layer", layers[0]), 0)
        run = ctl("exists", "%s/%s:v1" % (REG.host, repo))
        self.assertRc(run, 0)
        self.assertEqual(run.out.strip(), "true")

    def test_usage_errors_are_2(self):
        for args in (["inspect"], ["no-such-command"], ["inspect", "a", "--bogus"],
                     ["push", "%s/x:y" % REG.host], ["read-blob", "r", "d", "--offset", "x"],
                     ["-o", "yaml", "health"], []):
            with self.subTest(args=args):
                run = ctl(*args)
                self.assertRc(run, 2)
                lines = run.err.splitlines()
                self.assertEqual(len(lines), 1, run)
                self.assertTrue(lines[0].startswith("regdctl: usage: "), run)

    def test_no_daemon_is_unavailable(self):
        run = ctl("--addr", "127.0.0.1:%d" % util.free_port(), "--timeout", "5s",
                  "inspect", "%s/a:b" % REG.host, addr=False)
        self.assertRc(run, 14)
        self.assertErrorLine(run, "UNAVAILABLE")

    def test_help_and_version(self):
        run = ctl("--help")
        self.assertRc(run, 0)
        for want in ("inspect", "read-blob", "push-index", "upload", "pull", "health", "Exit status",
                     "INVALID_ARGUMENT", "NOT_FOUND", "usage error"):
            self.assertIn(want, run.out)
        self.assertRegex(run.out, r"\b3\s+INVALID_ARGUMENT")
        self.assertRegex(run.out, r"\b5\s+NOT_FOUND")
        for cmd in ("inspect", "push", "read-blob", "upload", "push-index", "pull", "health"):
            sub = ctl(cmd, "--help")
            self.assertRc(sub, 0)
            self.assertIn("Usage: regdctl " + cmd, sub.out)
        version = ctl("--version")
        self.assertRc(version, 0)
        self.assertRegex(version.out, r"^regdctl \d+\.\d+\.\d+")


# -- read-blob ---------------------------------------------------------------------------------

class ReadBlobTest(CtlCase):
    @classmethod
    def setUpClass(cls):
        cls.repo = uniq("ctl-read")
        cls.data = os.urandom(3 * MiB + 12345)
        path = write(ALLOWED, cls.repo + ".bin", cls.data)
        run = ctl("-q", "write-layer", "%s/%s" % (REG.host, cls.repo), path)
        assert run.rc == 0, run
        cls.digest = sha256(cls.data)
        cls.name = "%s/%s" % (REG.host, cls.repo)

    def test_whole_blob_to_file_and_stdout(self):
        out = os.path.join(ENV.workdir, uniq("blob"))
        run = ctl("read-blob", self.name, self.digest, "-o", out)
        self.assertRc(run, 0)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), self.data)
        run = ctl("read-blob", self.name, self.digest)
        self.assertRc(run, 0)
        self.assertEqual(run.stdout, self.data)

    def test_offset_resumes_into_file(self):
        n = MiB + 777
        out = os.path.join(ENV.workdir, uniq("partial"))
        # An interrupted read: the right first n bytes, then junk past them.
        with open(out, "wb") as f:
            f.write(self.data[:n] + b"junk" * 100)
        run = ctl("-o", "json", "read-blob", self.name, self.digest, "-o", out, "--offset", str(n))
        self.assertRc(run, 0)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), self.data)
        obj = run.json()
        self.assertEqual(obj["offset"], n)
        self.assertEqual(obj["bytes"], len(self.data) - n)
        self.assertTrue(obj["verified"])
        # --resume picks the file's size.
        with open(out, "r+b") as f:
            f.truncate(2 * MiB)
        run = ctl("read-blob", self.name, self.digest, "-o", out, "--resume")
        self.assertRc(run, 0)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), self.data)

    def test_offset_to_stdout(self):
        n = 2 * MiB + 5
        run = ctl("read-blob", self.name, self.digest, "--offset", str(n), "-o", "-")
        self.assertRc(run, 0)
        self.assertEqual(run.stdout, self.data[n:])

    def test_wrong_prefix_is_data_loss(self):
        n = 1000
        out = os.path.join(ENV.workdir, uniq("wrong"))
        with open(out, "wb") as f:
            f.write(b"x" * n)
        run = ctl("read-blob", self.name, self.digest, "-o", out, "--offset", str(n))
        self.assertRc(run, 15)
        self.assertErrorLine(run, "DATA_LOSS")

    def test_offset_beyond_file_is_refused(self):
        out = os.path.join(ENV.workdir, uniq("short"))
        with open(out, "wb") as f:
            f.write(b"abc")
        run = ctl("read-blob", self.name, self.digest, "-o", out, "--offset", "100")
        self.assertRc(run, 9)
        self.assertErrorLine(run, "FAILED_PRECONDITION")

    def test_cut_response_is_resumed_and_shown(self):
        out = os.path.join(ENV.workdir, uniq("cut"))
        fault = PROXY.add_fault("reset_response", method="GET", path=self.digest, nth=1,
                                after_bytes=MiB)
        try:
            run = ctl("-o", "json", "--progress", "plain", "read-blob",
                      "%s/%s" % (PROXY.host, self.repo), self.digest, "-o", out,
                      "--retry-delay", "100ms")
        finally:
            PROXY.remove_fault(fault)
        self.assertRc(run, 0)
        self.assertEqual(fault.fired, 1, run)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), self.data)
        obj = run.json()
        self.assertEqual(obj["retries"], 1, run)
        self.assertTrue(obj["verified"])
        self.assertEqual(len(re.findall(r"retry 1/5 in 0\.\ds: ", run.err)), 1, run)
        self.assertRegex(run.err.splitlines()[-1], SUMMARY_RE, run)

    def test_retry_text_from_the_registry_is_escaped(self):
        # A 503 whose error message carries a terminal title escape and a C1
        # CSI: the retry line on stderr shows the text, escaped.
        body = json.dumps({"errors": [{"code": "UNAVAILABLE",
                                       "message": "\x1b]0;pwned\x07busy\u009b2J"}]})
        fault = PROXY.add_fault("status", method="GET", path=self.digest, nth=1, status=503,
                                headers={"Content-Type": "application/json"},
                                body=body.encode())
        try:
            run = ctl("--progress", "plain", "read-blob", "%s/%s" % (PROXY.host, self.repo),
                      self.digest, "-o", os.path.join(ENV.workdir, uniq("evil")),
                      "--retry-delay", "100ms")
        finally:
            PROXY.remove_fault(fault)
        self.assertRc(run, 0)
        self.assertEqual(fault.fired, 1, run)
        self.assertRegex(run.err, r"retry 1/5 in .*503.*pwned.*busy", run)
        for bad in (ESC, "\x07", "\u009b"):
            self.assertNotIn(bad, run.err, run)


# -- pull --------------------------------------------------------------------------------------

def rehash_layout(test, layout):
    """Every file under blobs/ hashes to its name; returns the set of digests."""
    seen = set()
    for alg in os.listdir(os.path.join(layout, "blobs")):
        for name in os.listdir(os.path.join(layout, "blobs", alg)):
            with open(os.path.join(layout, "blobs", alg, name), "rb") as f:
                test.assertEqual(hashlib.new(alg, f.read()).hexdigest(), name,
                                 "blob file %s/%s does not hash to its name" % (alg, name))
            seen.add("%s:%s" % (alg, name))
    return seen


def index_names(layout):
    """{ref name: digest} of the layout's index.json."""
    with open(os.path.join(layout, "index.json")) as f:
        entries = json.load(f)["manifests"]
    return {e.get("annotations", {}).get("org.opencontainers.image.ref.name"): e["digest"]
            for e in entries}


class PullTest(CtlCase):
    @classmethod
    def setUpClass(cls):
        cls.img = images.build_image(uniq("ctl-pull"), {"org.example.pull": "ctl"},
                                     layer_sizes=(2 * MiB + 11, 3000))
        images.push(cls.img, ENV.workdir, REG.host, "ctl-pull/single", "v1")
        amd = images.build_image(uniq("ctl-pull-amd64"), {"arch": "amd64"},
                                 {"os": "linux", "architecture": "amd64"}, layer_sizes=(4000,))
        arm = images.build_image(uniq("ctl-pull-arm64"), {"arch": "arm64"},
                                 {"os": "linux", "architecture": "arm64", "variant": "v8"},
                                 layer_sizes=(5000,))
        cls.idx = images.build_index([amd, arm], [amd.platform, arm.platform])
        images.push(cls.idx, ENV.workdir, REG.host, "ctl-pull/multi", "v1")

    def want_blobs(self, obj):
        return {b.digest for b in images.all_blobs(obj)}

    def test_single_image_into_a_fresh_relative_dir(self):
        name = uniq("pulled")
        layout = os.path.join(ALLOWED, name)
        ref = "%s/ctl-pull/single:v1" % REG.host
        # Relative to regdctl's working directory: sent to regd as an absolute path.
        run = ctl("--progress", "plain", "pull", ref, "--layout", name, cwd=ALLOWED)
        self.assertRc(run, 0)
        self.assertRegex(run.out, r"ref:\s+%s" % re.escape(ref))
        self.assertRegex(run.out, r"layout:\s+%s\n" % re.escape(layout))
        self.assertRegex(run.out, r"ref_name:\s+v1\n")
        self.assertRegex(run.out, r"digest:\s+%s" % self.img.digest)
        self.assertEqual(index_names(layout), {"v1": self.img.digest})
        self.assertEqual(rehash_layout(self, layout), self.want_blobs(self.img))
        # Plain progress: no escapes, each blob downloaded once, the summary last.
        self.assertNotIn(ESC, run.err, run)
        lines = run.err.splitlines()
        for b in self.img.blobs():
            self.assertEqual(len([l for l in lines if b.hex[:12] in l and "downloaded" in l]),
                             1, run)
        m = SUMMARY_RE.search(lines[-1])
        self.assertTrue(m, run)
        self.assertIn("downloaded", m.group(2))
        self.assertNotIn("0 B transferred", lines[-1])

    def test_json_downloaded_then_existed(self):
        layout = os.path.join(ALLOWED, uniq("pulled-json"))
        ref = "%s/ctl-pull/single@%s" % (REG.host, self.img.digest)
        run = ctl("-o", "json", "pull", ref, "--layout", layout, "--ref-name", "mine",
                  "--concurrency", "2")
        self.assertRc(run, 0)
        obj = run.json()
        self.assertEqual(obj["ref"], ref)
        self.assertEqual(obj["layout"], layout)
        self.assertEqual(obj["ref_name"], "mine")
        self.assertEqual(obj["descriptor"]["digest"], self.img.digest)
        self.assertEqual(obj["descriptor"]["media_type"], images.OCI_MANIFEST)
        blobs = {b["digest"]: b for b in obj["blobs"]}
        for b in self.img.blobs():
            self.assertEqual(blobs[b.digest]["outcome"], "downloaded", obj)
            self.assertEqual(blobs[b.digest]["size"], b.size)
        self.assertGreaterEqual(obj["bytes_transferred"], sum(b.size for b in self.img.blobs()))
        self.assertEqual(obj["retries"], 0)
        self.assertEqual(index_names(layout), {"mine": self.img.digest})
        # Again, by digest without --ref-name: every blob is there (existed), and
        # index.json gains an entry named by the digest.
        again = ctl("-o", "json", "pull", ref, "--layout", layout)
        self.assertRc(again, 0)
        obj = again.json()
        self.assertEqual(obj["ref_name"], self.img.digest)
        self.assertEqual({b["outcome"] for b in obj["blobs"]}, {"existed"})
        self.assertEqual(obj["bytes_transferred"], 0)
        self.assertEqual(index_names(layout), {"mine": self.img.digest,
                                               self.img.digest: self.img.digest})
        rehash_layout(self, layout)

    def test_index_needs_a_platform_or_all(self):
        ref = "%s/ctl-pull/multi:v1" % REG.host
        layout = os.path.join(ALLOWED, uniq("pulled-index"))
        run = ctl("pull", ref, "--layout", layout)
        self.assertRc(run, 9)
        self.assertErrorLine(run, "FAILED_PRECONDITION")
        self.assertEqual(run.out, "")
        arm = self.idx.child("linux", "arm64", "v8")
        run = ctl("-q", "-o", "json", "pull", ref, "--layout", layout, "--platform", "linux/arm64",
                  "--ref-name", "arm")
        self.assertRc(run, 0)
        self.assertEqual(run.err, "", run)
        self.assertEqual(run.json()["descriptor"]["digest"], arm.digest)
        self.assertEqual(run.json()["descriptor"]["platform"]["architecture"], "arm64")
        run = ctl("-q", "pull", ref, "--layout", layout, "--all-platforms")
        self.assertRc(run, 0)
        self.assertEqual(index_names(layout), {"arm": arm.digest, "v1": self.idx.digest})
        self.assertEqual(rehash_layout(self, layout), self.want_blobs(self.idx))
        run = ctl("pull", ref, "--layout", layout, "--all-platforms", "--platform", "linux/amd64")
        self.assertRc(run, 2)

    def test_layout_outside_allowed_paths_is_refused(self):
        layout = os.path.join(OUTSIDE, uniq("pulled-outside"))
        run = ctl("pull", "%s/ctl-pull/single:v1" % REG.host, "--layout", layout)
        self.assertRc(run, 7)
        self.assertErrorLine(run, "PERMISSION_DENIED", only=True)
        self.assertFalse(os.path.exists(layout))
        run = ctl("pull", "%s/ctl-pull/single:v1" % REG.host)
        self.assertRc(run, 2)
        self.assertIn("--layout", run.err)

    def test_cut_download_is_retried_and_shown(self):
        layout = os.path.join(ALLOWED, uniq("pulled-cut"))
        big = self.img.layers[0]
        fault = PROXY.add_fault("reset_response", method="GET", path=big.digest, nth=1,
                                after_bytes=MiB)
        try:
            run = ctl("--progress", "plain", "-o", "json", "pull",
                      "%s/ctl-pull/single:v1" % PROXY.host, "--layout", layout,
                      "--retry-delay", "100ms", "--max-attempts", "4")
        finally:
            PROXY.remove_fault(fault)
        self.assertRc(run, 0)
        self.assertEqual(fault.fired, 1, run)
        self.assertEqual(run.json()["retries"], 1, run)
        retries = [l for l in run.err.splitlines() if "retry 1/4" in l]
        self.assertEqual(len(retries), 1, run)
        self.assertIn(big.hex[:12], retries[0])
        self.assertIn("1 retry", run.err.splitlines()[-1])
        self.assertEqual(rehash_layout(self, layout), self.want_blobs(self.img))


# -- upload ------------------------------------------------------------------------------------

class UploadTest(CtlCase):
    def test_upload_then_existed(self):
        repo = "%s/%s" % (REG.host, uniq("ctl-up"))
        data = os.urandom(5 * MiB + 3)
        path = write(OUTSIDE, uniq("up") + ".bin", data)  # not a file the daemon may read
        run = ctl("-o", "json", "upload", repo, path)
        self.assertRc(run, 0)
        obj = run.json()
        self.assertEqual(obj["outcome"], "UPLOADED")
        self.assertEqual(obj["descriptor"]["digest"], sha256(data))
        self.assertEqual(obj["bytes_sent"], len(data))
        self.assertEqual(obj["send_from"], [0])
        status, body = registry_blob(repo.split("/", 1)[1], sha256(data))
        self.assertEqual(status, 200)
        self.assertEqual(body, data)
        again = ctl("-o", "json", "upload", repo, path, "--digest", sha256(data)).json()
        self.assertEqual(again["outcome"], "EXISTED")
        self.assertEqual(again["bytes_sent"], 0)
        self.assertEqual(again["send_from"], [])

    def test_upload_through_a_503_resends(self):
        name = uniq("ctl-up503")
        data = os.urandom(7 * MiB)
        path = write(OUTSIDE, name + ".bin", data)
        faults = push_faults(name)
        try:
            run = ctl("-o", "json", "upload", "%s/%s" % (PROXY.host, name), path,
                      "--retry-delay", "0.2s", "--chunk-bytes", "512KiB")
        finally:
            for f in faults:
                PROXY.remove_fault(f)
        self.assertRc(run, 0)
        obj = run.json()
        self.assertEqual(obj["outcome"], "UPLOADED")
        self.assertEqual(obj["retries"], 1, run)
        self.assertGreaterEqual(len(obj["send_from"]), 2, run)
        self.assertGreater(obj["bytes_sent"], len(data), run)
        self.assertIn("retry 1/", run.err)
        status, body = registry_blob(name, sha256(data))
        self.assertEqual(status, 200)
        self.assertEqual(body, data)

    def test_upload_digest_mismatch_is_invalid_argument(self):
        repo = "%s/%s" % (REG.host, uniq("ctl-upbad"))
        path = write(OUTSIDE, uniq("bad") + ".bin", os.urandom(100000))
        run = ctl("upload", repo, path, "--digest", sha256(b"something else"))
        self.assertRc(run, 3)
        self.assertIn("not to the given digest", self.assertErrorLine(run, "INVALID_ARGUMENT"))

    def test_push_upload_needs_no_shared_files(self):
        repo = uniq("ctl-pushup")
        cfg, layers, cfg_bytes, layer_bytes = image_files(OUTSIDE, repo, (2 * MiB, 4000))
        run = ctl("-o", "json", "push", "%s/%s:v1" % (REG.host, repo), "--upload", "--config", cfg,
                  "--layer", layers[0], "--layer", layers[1], "--concurrency", "2")
        self.assertRc(run, 0)
        obj = run.json()
        status, digest = registry_manifest_digest(REG.url, repo, "v1")
        self.assertEqual(obj["descriptor"]["digest"], digest)
        self.assertEqual(sorted(b["digest"] for b in obj["blobs"]),
                         sorted(sha256(b) for b in [cfg_bytes] + layer_bytes))
        self.assertEqual({b["outcome"] for b in obj["blobs"]}, {"uploaded"})
        inspect = ctl("-o", "json", "inspect", "%s/%s:v1" % (REG.host, repo)).json()
        self.assertEqual(inspect["layers"], [sha256(b) for b in layer_bytes])
        # Without --upload the daemon must read the files, which lie outside its roots.
        run = ctl("push", "%s/%s:v2" % (REG.host, repo), "--config", cfg, "--layer", layers[0])
        self.assertRc(run, 7)


# -- health and credentials --------------------------------------------------------------------

class HealthAndAuthTest(CtlCase):
    def test_health(self):
        run = ctl("health")
        self.assertRc(run, 0)
        self.assertEqual(run.out.strip(), "SERVING")
        self.assertEqual(ctl("-o", "json", "health", "regd.v1.Registry").json(),
                         {"service": "regd.v1.Registry", "status": "SERVING"})
        run = ctl("health", "no.such.Service")
        self.assertRc(run, 5)
        self.assertErrorLine(run, "NOT_FOUND")

    def test_unix_socket_and_env_address(self):
        d = ENV.enter(Daemon(ENV.workdir, insecure_registries=[REG.host], listen="unix"),
                      "regd-unix")
        self.assertTrue(d.target.startswith("unix:"), d.target)
        run = ctl("--addr", d.target, "health", addr=False)
        self.assertRc(run, 0)
        run = ctl("exists", "%s/ctl-nothing/x:y" % REG.host, env={"REGD_ADDR": d.target}, addr=False)
        self.assertRc(run, 5)
        self.assertEqual(run.out.strip(), "false")

    def test_registry_credentials_per_call(self):
        repo = uniq("ctl-auth")
        ref = "%s/%s:v1" % (AREG.host, repo)
        cfg, layers, _, _ = image_files(ALLOWED, repo, (1000,))
        # The daemon has no credentials for AREG: anonymous is refused.
        run = ctl("push", ref, "--config", cfg, "--layer", layers[0])
        self.assertRc(run, 16)
        self.assertErrorLine(run, "UNAUTHENTICATED")
        run = ctl("-q", "push", ref, "--config", cfg, "--layer", layers[0],
                  "--registry-user", USER[0], "--registry-password", USER[1])
        self.assertRc(run, 0)
        # From a docker config ($DOCKER_CONFIG/config.json `auths`, base64 "auth").
        conf = os.path.join(ENV.workdir, uniq("docker-config"))
        util.write_docker_config(conf, {AREG.host: USER})
        run = ctl("--registry-auth-from-docker-config", "inspect", ref, env={"DOCKER_CONFIG": conf})
        self.assertRc(run, 0)
        self.assertIn("digest:", run.out)
        # username/password entries work too; a config without the registry says so.
        with open(os.path.join(conf, "config.json"), "w") as f:
            json.dump({"auths": {"http://%s/v2/" % AREG.host:
                                 {"username": USER[0], "password": USER[1]}}}, f)
        self.assertRc(ctl("--registry-auth-from-docker-config", "exists", ref,
                          env={"DOCKER_CONFIG": conf}), 0)
        with open(os.path.join(conf, "config.json"), "w") as f:
            json.dump({"auths": {"other.example:5000": {"auth": "eDp5"}}}, f)
        run = ctl("--registry-auth-from-docker-config", "exists", ref, env={"DOCKER_CONFIG": conf})
        self.assertRc(run, 9)
        self.assertIn(AREG.host, self.assertErrorLine(run, "FAILED_PRECONDITION"))
        # Wrong credentials: refused, no fallback.
        run = ctl("inspect", ref, "--registry-user", USER[0], "--registry-password", "wrong")
        self.assertRc(run, 16)


# -- TLS, mTLS and the caller's token ----------------------------------------------------------

class TlsTest(CtlCase):
    """A daemon serving TLS with client certificates (--tls_client_ca) and a --policy of two
    tenants: one named by its certificate's CN, one by its bearer token."""

    TOKEN = "regdctl-test-token-0123456789"

    @classmethod
    def setUpClass(cls):
        d = os.path.join(ENV.workdir, "certs")
        os.makedirs(d)
        ca = make_ca(d, "regdctl")
        cls.ca = ca[0]
        server = make_leaf(d, "server", ca, "regd", "DNS:regd.test,IP:127.0.0.1")
        cls.client = make_leaf(d, "client", ca, "ctl-client", "DNS:ctl-client")
        cls.stranger = make_leaf(d, "stranger", ca, "stranger", "DNS:stranger")
        policy = os.path.join(ENV.workdir, "policy.json")
        rw = ["pull", "push"]
        with open(policy, "w") as f:
            json.dump({"tenants": [
                {"name": "by-cert", "client_cert_cn": "ctl-client",
                 "allow": [{"prefix": REG.host + "/cert", "actions": rw}]},
                {"name": "by-token", "token_sha256": hashlib.sha256(cls.TOKEN.encode()).hexdigest(),
                 "allow": [{"prefix": REG.host + "/token", "actions": rw}]},
            ]}, f)
        dt = Daemon(ENV.workdir, insecure_registries=[REG.host], auths={},
                    extra_args=["--policy=" + policy, "--tls_cert=" + server[0],
                                "--tls_key=" + server[1], "--tls_client_ca=" + ca[0]])
        dt.spawn()
        ENV.callback(dt.kill)
        ENV.logs.append(("regd-tls", dt.stderr_path))
        dt._wait_ready()
        cls.addr = dt.target
        cls.cfg, cls.layers, _, _ = image_files(OUTSIDE, "tls-img", (2000,))

    def tls(self, *args, cert=()):
        """regdctl over TLS with the client certificate (or `cert`, or None for none)."""
        flags = ["--addr", self.addr, "--tls-ca", self.ca]
        cert = self.client if cert == () else cert
        if cert:
            flags += ["--tls-cert", cert[0], "--tls-key", cert[1]]
        return ctl(*(flags + list(args)), addr=False)

    def test_mtls_client_certificate(self):
        self.assertRc(self.tls("health"), 0)
        ref = "%s/cert/img:v1" % REG.host
        run = self.tls("-o", "json", "push", ref, "--upload", "--config", self.cfg,
                       "--layer", self.layers[0])
        self.assertRc(run, 0)
        status, digest = registry_manifest_digest(REG.url, "cert/img", "v1")
        self.assertEqual(run.json()["descriptor"]["digest"], digest)
        # Outside the tenant's prefix: refused by the policy.
        run = self.tls("inspect", "%s/token/x:v1" % REG.host)
        self.assertRc(run, 7)
        self.assertErrorLine(run, "PERMISSION_DENIED", only=True)
        # --tls-server-name: the certificate also names regd.test.
        run = self.tls("--tls-server-name", "regd.test", "exists", ref)
        self.assertRc(run, 0)
        run = self.tls("--tls-server-name", "wrong.test", "--timeout", "5s", "exists", ref)
        self.assertRc(run, 14)

    def test_token_names_the_tenant(self):
        # A certificate no tenant names: the token decides.
        ref = "%s/token/none:v1" % REG.host
        run = self.tls("exists", ref, cert=self.stranger)
        self.assertRc(run, 16)
        self.assertErrorLine(run, "UNAUTHENTICATED", only=True)
        run = self.tls("--token", self.TOKEN, "exists", ref, cert=self.stranger)
        self.assertRc(run, 5)
        self.assertEqual(run.out.strip(), "false")
        run = ctl("--addr", self.addr, "--tls-ca", self.ca, "--tls-cert", self.stranger[0],
                  "--tls-key", self.stranger[1], "exists", ref, env={"REGD_TOKEN": self.TOKEN},
                  addr=False)
        self.assertRc(run, 5)
        run = self.tls("--token", "not-the-token", "exists", ref, cert=self.stranger)
        self.assertRc(run, 16)
        # No client certificate, or plain gRPC: the TLS listener refuses the connection.
        self.assertRc(self.tls("--timeout", "5s", "health", cert=None), 14)
        self.assertRc(ctl("--addr", self.addr, "--timeout", "5s", "health", addr=False), 14)
        # Half a key pair is a usage error.
        self.assertRc(ctl("--addr", self.addr, "--tls-cert", self.client[0], "health", addr=False), 2)


# -- interrupting --------------------------------------------------------------------------------

class InterruptTest(CtlCase):
    def test_sigint_cancels_the_push_and_exits_130(self):
        repo = uniq("ctl-int")
        cfg, layers, _, _ = image_files(ALLOWED, repo, (LAYER,))
        uploads = r"^/v2/%s/blobs/uploads/" % re.escape(repo)
        slow = PROXY.add_fault("throttle", method="PATCH", path=uploads, times=None, rate=MiB // 4)
        try:
            cmd = command(["push", "%s/%s:v1" % (PROXY.host, repo), "--config", cfg,
                           "--layer", layers[0]])
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            util.track(proc)
            # Wait until the layer's upload is under way (a PATCH reached the proxy).
            util.wait_until(lambda: any(e.method == "PATCH" and repo in e.path for e in PROXY.log())
                            or proc.poll() is not None, 20, what="a PATCH")
            time.sleep(0.5)
            signalled = time.monotonic()
            proc.send_signal(2)  # SIGINT
            out, err = proc.communicate(timeout=30)
            took = time.monotonic() - signalled
            util.untrack(proc)
        finally:
            PROXY.remove_fault(slow)
        err = err.decode()
        self.assertEqual(proc.returncode, 130, err)
        self.assertEqual(err.splitlines()[-1], "regdctl: CANCELLED: interrupted", err)
        self.assertLess(took, 5, "regdctl took %.1fs to stop after SIGINT" % took)
        # The daemon saw the cancel: the call ends CANCELLED and it DELETEs its session.
        util.wait_until(lambda: re.search(r"PushImage \S*%s\S* CANCELLED" % re.escape(repo),
                                          util.read_tail(D.stderr_path)), 20,
                        what="regd logging the push as CANCELLED")
        util.wait_until(lambda: any(e.method == "DELETE" and repo in e.path for e in PROXY.log()),
                        20, what="a DELETE of the upload session")
        status, _ = registry_manifest_digest(REG.url, repo, "v1")
        self.assertEqual(status, 404)


if __name__ == "__main__":
    testing.main("test_regdctl")
