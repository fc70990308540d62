#!/usr/bin/python3
"""Integration tests for UploadBlob (the caller streams a blob's bytes), end to end.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_upload_blob.py [-k name]

One docker-registry 2.8 (no auth) and a fixtures/fault_proxy.py in front of it.
The module's daemon runs with --chunk_size=8MiB: a blob up to 8 MiB goes up in
one PUT, a larger one in 8 MiB PATCHes. The memory test starts a daemon of its
own, so that its VmHWM is about that upload only.

Caller: StreamUpload below behaves like a well-behaved UploadBlob client. It
sends `start`, waits for `send_from`, streams 1 MiB chunks (configurable) from
that offset, starts again from a new offset whenever another `send_from`
comes, keeps the stream open after the last chunk until the `result`, and
records every event, the offsets it was asked for and the bytes it sent per
pass. gRPC pulls the requests from an iterator fed by a bounded queue (a feeder
thread fills it), and pulls the next message only once the previous one is
written: that is the back-pressure.

- UPLOADED (one PUT and several PATCHes): descriptor, bytes on the registry,
  bytes sent, one send_from{0}, progress up to the size, result last.
- EXISTED and MOUNTED at once, with no send_from and no byte sent.
- 200 MiB through resets mid-body and 503 bursts: the blob lands intact
  (direct GET, then PushImage with digest-only BlobSources and skopeo); the
  send_from offsets and retry events, and the bytes re-sent per fault.
- Digest and size mismatches, chunks past the end: INVALID_ARGUMENT, nothing
  committed, no upload session left.
- Chunks at offsets regd did not ask for are dropped.
- Protocol errors (no start, bad digest, a second start, ...) and the daemon
  still serving.
- A caller that goes away mid-upload: the session is deleted.
- 512 MiB streamed from a generator: VmHWM stays under 96 MiB.
- PushImage with digest-only BlobSources: EXISTED, MOUNTED, FAILED_PRECONDITION.
"""

import hashlib
import itertools
import json
import os
import queue
import struct
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import images, paths, stubs, testing, util  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.fault_proxy import FaultProxy  # noqa: E402
from fixtures.registry import Registry  # noqa: E402
from fixtures.uploads import (Stream, StreamChecks, head_blob, random_bytes, retry_config,  # noqa: E402
                              seconds, sha256, upload_sessions, write_file)

S = stubs.load()
pb = S.registry_pb2
T = 60        # seconds, deadline of an upload call
T_BAD = 10    # seconds, deadline of a call that must fail fast
MiB = 1 << 20
CHUNK = 8 * MiB           # the daemon's --chunk_size
TAIL = 1 * MiB            # the last bytes of a streamed blob go with the commit
MAX_BUFFERED = 512 * 1024  # BlobStream's buffer (core/upload/blob_stream.h)
MAX_ATTEMPTS = 6
INVALID = grpc.StatusCode.INVALID_ARGUMENT

ENV = None
REG = None
PROXY = None
D = None
BLOBS = None
NUMBERS = []   # (what, value) printed at the end
_seq = itertools.count(1)


def note(what, value):
    NUMBERS.append((what, value))
    sys.stderr.write("  [measured] %s: %s\n" % (what, value))


def setUpModule():
    global ENV, REG, PROXY, D, BLOBS
    ENV = testing.Env(prefix="regd-upload-blob-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    BLOBS = os.path.join(ENV.workdir, "blobs")
    os.makedirs(BLOBS)
    REG = ENV.enter(Registry(ENV.workdir, auth="none"), "registry")
    PROXY = ENV.enter(FaultProxy(REG.host))
    D = ENV.enter(Daemon(ENV.workdir, insecure_registries=[REG.host, PROXY.host],
                         extra_args=["--chunk_size=%d" % CHUNK], rpc_timeout=T), "regd")


def tearDownModule():
    if NUMBERS:
        sys.stderr.write("\n===== test_upload_blob measurements =====\n")
        for what, value in NUMBERS:
            sys.stderr.write("  %s: %s\n" % (what, value))


def retry(max_attempts=MAX_ATTEMPTS, initial_delay=0.05):
    return retry_config(pb, max_attempts=max_attempts, initial_delay=initial_delay)


def uniq(name):
    return "%s-%d" % (name, next(_seq))


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


# -- blob sources ------------------------------------------------------------------------------

class FileSource:
    """A blob in a file: read(offset, n) with pread."""

    def __init__(self, path):
        self.path = path
        self.size = os.path.getsize(path)
        self._fd = os.open(path, os.O_RDONLY)

    def read(self, offset, n):
        return os.pread(self._fd, n, offset)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PatternSource:
    """`size` deterministic bytes made on the fly (no file): MiB block i is a random
    1 MiB block with i in its first 8 bytes, so no two blocks are equal."""

    def __init__(self, size, seed):
        self.size = size
        self._base = random_bytes(MiB, seed)

    def _block(self, i):
        return struct.pack("<Q", i) + self._base[8:]

    def read(self, offset, n):
        n = min(n, self.size - offset)
        out = []
        while n > 0:
            i, within = divmod(offset, MiB)
            piece = self._block(i)[within:within + n]
            out.append(piece)
            offset += len(piece)
            n -= len(piece)
        return b"".join(out)

    def digest(self):
        h = hashlib.sha256()
        for off in range(0, self.size, MiB):
            h.update(self.read(off, MiB))
        return "sha256:" + h.hexdigest()

    def close(self):
        pass


# -- the caller --------------------------------------------------------------------------------

class Pass:
    """The chunks sent after one send_from{start}."""

    def __init__(self, start):
        self.start = start
        self.sent = 0       # bytes handed to gRPC for this pass
        self.end = start    # the offset after the last byte handed over

    def __repr__(self):
        return "Pass(start=%d sent=%d end=%d)" % (self.start, self.sent, self.end)


_END = object()


class StreamUpload:
    """One UploadBlob call, driven like a well-behaved caller.

    start: the UploadBlobStart; source: read(offset, n) -> bytes and .size.
    Extras to break the protocol on purpose:
      junk: [(offset, bytes)] chunks queued right after `start`, before any
            send_from (regd must drop them; not at 0, which regd may be asking
            for by the time they arrive);
      junk_after_ask: likewise, queued first thing after the first send_from;
      close_after: half-close once this many bytes of the first pass were queued;
      past_end: in the first pass, "last": the last chunk is 100 bytes too long;
            an offset: once the stream is there, one chunk at another offset that
            runs 100 bytes past the blob's end, then the rest as usual;
      on_event(upload, event): called on the event thread for every event.

    After run(): events, times, error/code/details, send_froms (offsets asked
    for, in order), passes (one Pass per send_from), sent (total bytes of
    chunks handed to gRPC, junk included), result (the LayerResult or None).
    """

    def __init__(self, stub, start, source, chunk=MiB, timeout=T, junk=(), junk_after_ask=(),
                 close_after=None, past_end=None, on_event=None):
        self.stub = stub
        self.start = start
        self.source = source
        self.size = start.size
        self.chunk = chunk
        self.timeout = timeout
        self.junk = list(junk)
        self.junk_after_ask = list(junk_after_ask)
        self.close_after = close_after
        self.past_end = past_end
        self.on_event = on_event

        self.events = []
        self.times = []
        self.error = None
        self.send_froms = []
        self.passes = []
        self.sent = 0
        self.junk_sent = 0
        self.result = None
        self.half_closed_at = None
        self.call = None

        self._q = queue.Queue(maxsize=2)
        self._cond = threading.Condition()
        self._want = None      # the newest send_from offset the feeder has not taken
        self._pass_no = -1     # the pass the feeder works on
        self._done = False     # no more chunks: half-close
        self._feeder = None

    # -- the request side ---------------------------------------------------------
    def _requests(self):
        yield pb.UploadBlobRequest(start=self.start)
        while True:
            try:
                item = self._q.get(timeout=0.05)
            except queue.Empty:
                with self._cond:
                    if self._done:
                        return  # the result is in (or the call ended): half-close
                continue
            if item is _END:
                with self._cond:
                    self.half_closed_at = self.sent
                return
            pass_no, req = item
            n = len(req.chunk.data)
            with self._cond:
                self.sent += n
                if pass_no is None:
                    self.junk_sent += n
                else:
                    p = self.passes[pass_no]
                    p.sent += n
                    p.end = max(p.end, req.chunk.offset + n)
            yield req

    def _put(self, item):
        """Queues item unless the call is over or a new send_from came; False then.
        Under the lock, so that _ask() drops every chunk of an older pass."""
        with self._cond:
            while True:
                if self._done:
                    return False
                if item is not _END and item[0] is not None and item[0] != self._pass_no:
                    return False
                try:
                    self._q.put_nowait(item)
                    return True
                except queue.Full:
                    self._cond.wait(0.01)

    def _chunk(self, pass_no, offset, data):
        return (pass_no, pb.UploadBlobRequest(chunk=pb.UploadChunk(offset=offset, data=data)))

    def _feed(self):
        for off, data in self.junk:
            self._put(self._chunk(None, off, data))
        first = True
        while True:
            with self._cond:
                while self._want is None and not self._done:
                    self._cond.wait()
                if self._done:
                    break
                offset, self._want = self._want, None
                pass_no = self._pass_no
            if first:
                first = False
                for off, data in self.junk_after_ask:
                    self._put(self._chunk(None, off, data))
            queued = 0
            while offset < self.size:
                with self._cond:
                    if self._done or self._want is not None:
                        break
                if pass_no == 0 and self.close_after is not None and queued >= self.close_after:
                    self._put(_END)
                    return
                n = min(self.chunk, self.size - offset)
                if pass_no == 0 and self.past_end is not None and offset + n >= self.size:
                    # The last chunk, 100 bytes too long.
                    self._put(self._chunk(pass_no, offset, self.source.read(offset, n)
                                          + b"\0" * 100))
                    break
                if (pass_no == 0 and self.past_end is not None and self.past_end != "last"
                        and offset >= self.past_end):
                    # A chunk elsewhere (not where the stream is) that runs past the end.
                    at = self.size - self.chunk + 100
                    self._put(self._chunk(None, at, self.source.read(at, self.chunk - 100)
                                          + b"\0" * 100))
                    self.past_end = "last"
                data = self.source.read(offset, n)
                if not self._put(self._chunk(pass_no, offset, data)):
                    break
                offset += n
                queued += n
            # Every byte from `offset` is queued: wait for the result or another send_from.

    def _ask(self, offset):
        with self._cond:
            self.send_froms.append(offset)
            self.passes.append(Pass(offset))
            self._pass_no = len(self.passes) - 1
            self._want = offset
            # Chunks of the old pass that gRPC has not taken yet are not sent.
            while True:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                if item is _END:  # the caller half-closed already: keep that
                    self._q.put_nowait(item)
                    break
            self._cond.notify_all()

    def finish(self):
        with self._cond:
            self._done = True
            self._cond.notify_all()

    # -- the event side -----------------------------------------------------------
    def run(self):
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()
        self.call = self.stub.UploadBlob(self._requests(), timeout=self.timeout)
        try:
            for ev in self.call:
                self.events.append(ev)
                self.times.append(time.monotonic())
                kind = ev.WhichOneof("event")
                if kind == "send_from":
                    self._ask(ev.send_from.offset)
                elif kind == "result":
                    self.result = ev.result
                    self.finish()
                if self.on_event is not None:
                    self.on_event(self, ev)
        except grpc.RpcError as e:
            self.error = e
        finally:
            self.finish()
            self._feeder.join(10)
        return self

    # -- reading the outcome --------------------------------------------------------
    @property
    def code(self):
        return self.error.code() if self.error is not None else grpc.StatusCode.OK

    @property
    def details(self):
        return self.error.details() if self.error is not None else ""

    def kinds(self):
        return [e.WhichOneof("event") for e in self.events]

    def retries(self):
        return [e.retry for e in self.events if e.WhichOneof("event") == "retry"]

    def progress(self):
        return [e.progress for e in self.events if e.WhichOneof("event") == "progress"]

    def control(self):
        """The events but progress, as short strings: ["send_from 0", "retry 1", "result"]."""
        out = []
        for e in self.events:
            k = e.WhichOneof("event")
            if k == "send_from":
                out.append("send_from %d" % e.send_from.offset)
            elif k == "retry":
                out.append("retry %d" % e.retry.attempt)
            elif k == "result":
                out.append("result")
        return out

    def summary(self, limit=80):
        out = []
        for e in self.events[:limit]:
            k = e.WhichOneof("event")
            if k == "progress":
                out.append("progress %d/%d" % (e.progress.complete, e.progress.total))
            elif k == "retry":
                r = e.retry
                out.append("retry %d/%d in %.3fs: %s" % (r.attempt, r.max_attempts,
                                                         seconds(r.next_retry_in), r.error))
            elif k == "send_from":
                out.append("send_from %d" % e.send_from.offset)
            elif k == "result":
                out.append("result %s %s %d" % (e.result.Outcome.Name(e.result.outcome),
                                                e.result.descriptor.digest,
                                                e.result.descriptor.size))
        if len(self.events) > limit:
            out.append("... %d more" % (len(self.events) - limit))
        out.append("passes %s, sent %d (junk %d)" % (self.passes, self.sent, self.junk_sent))
        out.append("status %s %s" % (self.code.name, self.details))
        return "\n".join(out)


def raw_call(stub, requests, timeout=T_BAD):
    """UploadBlob with a fixed list of requests, half-closed after them;
    returns (events, error)."""
    events, error = [], None
    try:
        for ev in stub.UploadBlob(iter(requests), timeout=timeout):
            events.append(ev)
    except grpc.RpcError as e:
        error = e
    return events, error


def held_open_call(stub, requests, timeout=T_BAD):
    """Like raw_call, but the stream stays open (no half-close) until the call ends."""
    done = threading.Event()

    def gen():
        for r in requests:
            yield r
        done.wait(timeout + 5)

    events, error = [], None
    try:
        for ev in stub.UploadBlob(gen(), timeout=timeout):
            events.append(ev)
    except grpc.RpcError as e:
        error = e
    finally:
        done.set()
    return events, error


# -- the registry's side ---------------------------------------------------------------------------

def get_blob_digest(repo, digest):
    """GET /v2/REPO/blobs/DIGEST straight at the registry: (status, sha256 digest, size)."""
    req = urllib.request.Request("%s/v2/%s/blobs/%s" % (REG.url, repo, digest))
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            h = hashlib.sha256()
            n = 0
            while True:
                piece = r.read(MiB)
                if not piece:
                    break
                h.update(piece)
                n += len(piece)
            return r.status, "sha256:" + h.hexdigest(), n
    except urllib.error.HTTPError as e:
        return e.code, None, 0


def manifest_status(repo, tag):
    h = {"Accept": ",".join([images.OCI_MANIFEST, images.OCI_INDEX, images.DOCKER_MANIFEST,
                             images.DOCKER_LIST])}
    status, _, _ = util.http_get("%s/v2/%s/manifests/%s" % (REG.url, repo, tag), headers=h,
                                 method="HEAD")
    return status


def skopeo(args, timeout=120):
    res = subprocess.run([paths.SKOPEO] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=timeout)
    if res.returncode != 0:
        raise AssertionError("skopeo %s failed (%d): %s" % (
            " ".join(args), res.returncode, res.stderr.decode(errors="replace")))
    return res.stdout


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            piece = f.read(MiB)
            if not piece:
                break
            h.update(piece)
    return "sha256:" + h.hexdigest()


# -- the tests -------------------------------------------------------------------------------------

class UploadCase(testing.IntegrationCase, StreamChecks):
    def setUp(self):
        PROXY.clear_faults()
        PROXY.reset_counters()

    def tearDown(self):
        PROXY.clear_faults()
        self.assertTrue(D.alive(), "regd died:\n" + D.log())

    # -- helpers --------------------------------------------------------------------
    def repo(self, name=None):
        return "upload/" + uniq((name or self._testMethodName.replace("test_", ""))[:40]
                                .replace("_", "-"))

    def blob_file(self, size, name=None):
        name = uniq(name or "blob")
        data = random_bytes(size, "%s-%s" % (self.id(), name))
        path = write_file(BLOBS, name, data)
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        return data, path

    def start_msg(self, host, repo, digest, size, mount_from="", media_type="",
                  retry_cfg=None):
        return pb.UploadBlobStart(repo="%s/%s" % (host, repo), digest=digest, size=size,
                                  mount_from=mount_from, media_type=media_type,
                                  retry=retry_cfg or retry())

    def upload(self, repo, source, digest=None, size=None, host=None, stub=None, **kw):
        """Runs a StreamUpload of `source` (FileSource/PatternSource, or bytes)."""
        if isinstance(source, (bytes, bytearray)):
            data = bytes(source)
            path = write_file(BLOBS, uniq("src"), data)
            self.addCleanup(os.unlink, path)
            source = FileSource(path)
            if digest is None:
                digest = sha256(data)
        self.addCleanup(source.close)
        size = source.size if size is None else size
        start = self.start_msg(host or REG.host, repo, digest, size,
                               mount_from=kw.pop("mount_from", ""),
                               media_type=kw.pop("media_type", ""),
                               retry_cfg=kw.pop("retry_cfg", None))
        return StreamUpload(stub or D.stub, start, source, **kw).run()

    def uploads(self, repo):
        PROXY.wait_idle()
        return [e for e in PROXY.log(kind="upload") if e.path.startswith("/v2/%s/" % repo)]

    def explain(self, u, ups=None):
        text = u.summary()
        if ups:
            text += "\nrequests:\n  " + "\n  ".join(
                "%s %s -> %s in=%d fwd=%d %s %s" % (
                    e.method, (e.session or "")[:8], e.status, e.body_in, e.body_fwd,
                    e.header("Content-Range") or "", e.fault or "") for e in ups)
        return text

    def assertUploaded(self, u, digest, size, outcome="UPLOADED", media_type=None):
        """A finished UploadBlob: result last, Progress{size,size} right before it,
        progress never past the size. Returns the LayerResult."""
        why = u.summary()
        self.assertIsNone(u.error, "stream failed: %s\n%s" % (u.details, why))
        kinds = u.kinds()
        self.assertGreaterEqual(len(kinds), 2, why)
        self.assertEqual(kinds[-1], "result", "the last message must be the result\n" + why)
        self.assertEqual(kinds.count("result"), 1, why)
        self.assertEqual(kinds[-2], "progress", "a Progress right before the result\n" + why)
        fin = u.events[-2].progress
        self.assertEqual((fin.complete, fin.total), (size, size), why)
        for p in u.progress():
            self.assertEqual(p.total, size, why)
            self.assertGreaterEqual(p.complete, 0, why)
            self.assertLessEqual(p.complete, size, why)
        res = u.result
        self.assertEqual(res.Outcome.Name(res.outcome), outcome, why)
        self.assertEqual(res.descriptor.digest, digest, why)
        self.assertEqual(res.descriptor.size, size, why)
        self.assertEqual(res.descriptor.media_type, media_type or images.OCI_LAYER_GZIP, why)
        return res

    def assertLanded(self, repo, digest, size):
        status, got, n = get_blob_digest(repo, digest)
        self.assertEqual(status, 200, "GET %s in %s" % (digest, repo))
        self.assertEqual((got, n), (digest, size), "the registry serves other bytes")

    def assertNothingCommitted(self, repo, digests, why=""):
        for d in digests:
            self.assertEqual(head_blob(REG.url, repo, d), 404,
                             "%s is on the registry\n%s" % (d, why))

    def assertNoSessions(self, repo, why="", timeout=3):
        deadline = time.monotonic() + timeout
        while upload_sessions(REG, repo) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = upload_sessions(REG, repo)
        self.assertEqual(left, {}, "the registry still holds upload sessions for %s %.0f s later"
                         "\n%s" % (repo, timeout, why))

    def assertServing(self):
        """The daemon is alive and a fresh small UploadBlob still works."""
        self.assertTrue(D.alive(), "regd died:\n" + D.log())
        data = random_bytes(1000, uniq("alive"))
        u = self.upload(self.repo("alive"), data)
        self.assertUploaded(u, sha256(data), len(data))


# -- 1. uploads ------------------------------------------------------------------------------------

class UploadTest(UploadCase):
    def check_upload(self, size, patches):
        data, path = self.blob_file(size)
        digest = sha256(data)
        repo = self.repo("size-%d" % size)
        u = self.upload(repo, FileSource(path), digest=digest, host=PROXY.host)
        ups = self.uploads(repo)
        why = self.explain(u, ups)
        self.assertUploaded(u, digest, size)
        self.assertEqual(u.send_froms, [0], "one send_from{0}\n" + why)
        self.assertEqual(u.control(), ["send_from 0", "result"], why)
        first = u.kinds().index("send_from")
        self.assertTrue(all(p.complete == 0 for p in (e.progress for e in u.events[:first])),
                        "bytes reported before any were asked for\n" + why)
        self.assertEqual(u.sent, size, "the caller sent each byte once\n" + why)
        self.assertEqual(u.retries(), [], why)
        self.assertLanded(repo, digest, size)
        # What went to the registry: the whole blob once, in `patches` PATCHes
        # and the commit, which carries the last MiB (held back until the whole
        # blob was hashed: a mismatch never cuts a request short).
        self.assertEqual(PROXY.upload_bytes(), size, why)
        self.assertEqual(len([e for e in ups if e.method == "PATCH"]), patches, why)
        puts = [e for e in ups if e.method == "PUT"]
        self.assertEqual([e.body_fwd for e in puts], [min(size, TAIL)], why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 1, why)
        self.assertEqual(upload_sessions(REG, repo), {}, why)
        return u

    def test_small_blob_one_put(self):
        self.check_upload(TAIL, patches=0)

    def test_blob_over_the_tail_patch_then_put(self):
        self.check_upload(3 * MiB, patches=1)

    def test_multi_chunk_blob(self):
        u = self.check_upload(40 * MiB, patches=5)
        # Progress went up to the size through the chunks, never back.
        done = [p.complete for p in u.progress()]
        self.assertEqual(done, sorted(done), u.summary())
        self.assertGreater(len(set(done)), 3, u.summary())

    def test_odd_sizes_and_chunking(self):
        # A caller's chunk size need not match anything of regd's: 300,001-byte
        # chunks of a blob one byte over the registry chunk size (two PATCHes).
        size = CHUNK + 1
        data, path = self.blob_file(size)
        repo = self.repo()
        u = self.upload(repo, FileSource(path), digest=sha256(data), chunk=300001,
                        host=PROXY.host)
        self.assertUploaded(u, sha256(data), size)
        self.assertEqual(u.send_froms, [0], u.summary())
        self.assertEqual(u.sent, size, u.summary())
        self.assertLanded(repo, sha256(data), size)

    def test_empty_blob(self):
        data = b""
        repo = self.repo()
        u = self.upload(repo, data)
        self.assertUploaded(u, sha256(data), 0)
        self.assertEqual(u.sent, 0, u.summary())
        self.assertEqual(head_blob(REG.url, repo, sha256(data)), 200)

    def test_media_type_is_kept(self):
        data = images.make_config({"org.example": "upload"}).data
        repo = self.repo()
        u = self.upload(repo, data, media_type=images.OCI_CONFIG)
        self.assertUploaded(u, sha256(data), len(data), media_type=images.OCI_CONFIG)


# -- 2. nothing to send ---------------------------------------------------------------------------

class NoBytesTest(UploadCase):
    def test_again_is_existed_at_once(self):
        data, path = self.blob_file(12 * MiB)
        digest = sha256(data)
        repo = self.repo()
        first = self.upload(repo, FileSource(path), digest=digest, host=PROXY.host)
        self.assertUploaded(first, digest, len(data))
        PROXY.reset_counters()
        again = self.upload(repo, FileSource(path), digest=digest, host=PROXY.host)
        why = self.explain(again, self.uploads(repo))
        self.assertUploaded(again, digest, len(data), outcome="EXISTED")
        self.assertEqual(again.send_froms, [], "no send_from when nothing is needed\n" + why)
        self.assertEqual(again.kinds(), ["progress", "result"], why)
        self.assertEqual(again.sent, 0, why)
        self.assertEqual(PROXY.upload_bytes(), 0, why)
        self.assertEqual([(e.method, e.status) for e in PROXY.log()],
                         [("HEAD", 200)], "one HEAD, nothing else\n" + why)

    def test_mount_from_another_repo(self):
        data, path = self.blob_file(10 * MiB)
        digest = sha256(data)
        src = self.repo("src")
        u = self.upload(src, FileSource(path), digest=digest)
        self.assertUploaded(u, digest, len(data))
        for mount_from in (src, "%s/%s" % (PROXY.host, src)):
            with self.subTest(mount_from=mount_from):
                PROXY.reset_counters()
                dst = self.repo("dst")
                m = self.upload(dst, FileSource(path), digest=digest, host=PROXY.host,
                                mount_from=mount_from)
                why = self.explain(m, self.uploads(dst))
                self.assertUploaded(m, digest, len(data), outcome="MOUNTED")
                self.assertEqual(m.send_froms, [], why)
                self.assertEqual(m.sent, 0, why)
                self.assertEqual(PROXY.upload_bytes(), 0, why)
                posts = [e for e in PROXY.log(method="POST")]
                self.assertEqual([e.status for e in posts], [201], why)
                self.assertIn("mount=", posts[0].path, why)
                self.assertLanded(dst, digest, len(data))
                self.assertEqual(upload_sessions(REG, dst), {}, why)

    def test_mount_from_a_repo_without_it_uploads(self):
        data, path = self.blob_file(2 * MiB)
        digest = sha256(data)
        dst = self.repo("dst")
        u = self.upload(dst, FileSource(path), digest=digest, mount_from=self.repo("empty"))
        self.assertUploaded(u, digest, len(data))
        self.assertEqual(u.send_froms, [0], u.summary())
        self.assertEqual(u.sent, len(data), u.summary())
        self.assertLanded(dst, digest, len(data))


# -- 3. faults -------------------------------------------------------------------------------------

class FaultTest(UploadCase):
    SIZE = 200 * MiB

    def test_200mib_through_resets_and_503_bursts(self):
        size = self.SIZE
        path = os.path.join(BLOBS, uniq("big"))
        with open(path, "wb") as f:
            for i in range(size // (8 * MiB)):
                f.write(random_bytes(8 * MiB, "big-%d" % i))
        self.addCleanup(os.unlink, path)
        digest = file_sha256(path)
        repo = self.repo("big")
        on = r"^/v2/%s/blobs/uploads/" % repo
        # PATCHes of this repo, counted over every session (each 8 MiB):
        #  #1 [0,8M) #2 [8,16M)  #3 [16,24M) cut after 1 MiB: 2.8 drops the session
        #  -> a fresh session from 0: #4 [0,8M) #5 [8,16M) #6 [16,24M) #7 [24,32M)
        #  #8-#10 [32,40M) 503 (the proxy answers; the session stays) #11 [32,40M)
        #  #12 [40M..) ... #20-#21 [104,112M) 503, #22 [104,112M) ok ...
        #  #30 [168,176M) cut after 3 MiB: dropped again, from 0 once more.
        PROXY.add_fault("reset_mid_body", method="PATCH", path=on, nth=3, after_bytes=1 * MiB)
        PROXY.add_fault("status", method="PATCH", path=on, nth=8, times=3, status=503)
        PROXY.add_fault("status", method="PATCH", path=on, nth=20, times=2, status=503)
        PROXY.add_fault("reset_mid_body", method="PATCH", path=on, nth=30, after_bytes=3 * MiB)
        t0 = time.monotonic()
        u = self.upload(repo, FileSource(path), digest=digest, host=PROXY.host)
        took = time.monotonic() - t0
        ups = self.uploads(repo)
        why = self.explain(u, ups)
        note("200 MiB through 2 resets and 5 503s", "%.1fs, caller sent %d MiB in %d passes"
             % (took, u.sent // MiB, len(u.passes)))
        self.assertUploaded(u, digest, size)
        self.assertLanded(repo, digest, size)

        # The offsets regd asked for, and a retry event before each later one.
        M = MiB
        self.assertEqual(u.send_froms, [0, 0, 32 * M, 32 * M, 32 * M, 104 * M, 104 * M, 0], why)
        self.assertEqual(u.control(), [
            "send_from 0",
            "retry 1", "send_from 0",                                  # cut: session dropped
            "retry 1", "send_from %d" % (32 * M), "retry 2", "send_from %d" % (32 * M),
            "retry 3", "send_from %d" % (32 * M),                      # 503 x 3
            "retry 1", "send_from %d" % (104 * M), "retry 2", "send_from %d" % (104 * M),
            "retry 1", "send_from 0",                                  # cut: dropped again
            "result"], why)
        for r in u.retries():
            self.assertEqual(r.max_attempts, MAX_ATTEMPTS, why)
            self.assertTrue(r.error, why)
        self.assertEqual(sum("503" in r.error for r in u.retries()), 5, why)

        # Requests: three sessions (two dropped), no blind replay after a fault.
        posts = [e for e in ups if e.method == "POST"]
        self.assertEqual(len(posts), 3, "one fresh session per dropped one\n" + why)
        for i, e in enumerate(ups[:-1]):
            if e.method == "PATCH" and e.status not in (202,):
                self.assertIn(ups[i + 1].method, ("GET", "POST"),
                              "request %d (%s -> %s) was followed by a blind %s\n%s"
                              % (i, e.method, e.status, ups[i + 1].method, why))
        last = [e for e in ups if e.session == ups[-1].session and e.method == "PATCH"]
        final_put = [e for e in ups if e.session == ups[-1].session and e.method == "PUT"]
        self.assertEqual(sum(e.body_fwd for e in last + final_put), size, why)
        self.assertEqual([e.body_fwd for e in final_put], [TAIL], why)
        self.assertEqual([e.status for e in last], [202] * (size // CHUNK), why)

        # What reached the registry: the last session the whole blob, once; the
        # two dropped ones what they had got (16 MiB + 1 MiB of the cut PATCH,
        # 168 MiB + 3 MiB). A 503 forwards nothing; each refused chunk was read
        # in full by the proxy (regd sends it again: one chunk a fault).
        self.assertEqual(PROXY.upload_bytes(), size + (16 + 1) * M + (168 + 3) * M, why)
        refused = [e for e in ups if e.status == 503]
        self.assertEqual([(e.body_in, e.body_fwd) for e in refused], [(CHUNK, 0)] * 5, why)
        cut = [e for e in ups if e.fault == "reset_mid_body"]
        self.assertEqual([e.body_fwd for e in cut], [1 * M, 3 * M], why)
        # Each resend starts where the registry stands: the start of the refused
        # chunk, which is what the registry had acknowledged last.
        acked = 0
        for e in ups:
            if e.method == "POST":
                acked = 0
            rng = e.header("Content-Range")
            if e.method == "PATCH" and e.status == 202:
                self.assertEqual(int(rng.split("-")[0]), acked, "PATCH not at the registry's "
                                 "offset\n" + why)
                acked = int(rng.split("-")[1]) + 1
            elif e.method == "PATCH" and e.status == 503:
                self.assertEqual(int(rng.split("-")[0]), acked, why)

        # The caller's side. At a restart the caller sends again everything from the
        # new offset up to where it had got: for a 503 the refused chunk plus what
        # it had handed over beyond it (see READ_AHEAD). Where the registry
        # dropped the session the caller starts over at 0, by design.
        resent = [prev.end - cur.start for prev, cur in zip(u.passes, u.passes[1:])]
        note("200 MiB: caller re-sent per restart (MiB)",
             ", ".join("%.1f from %d" % (r / float(MiB), cur.start // MiB)
                       for r, cur in zip(resent, u.passes[1:])))
        for k, (r, cur) in enumerate(zip(resent, u.passes[1:])):
            if cur.start == 0:
                continue
            self.assertLessEqual(r, CHUNK + self.READ_AHEAD,
                                 "restart %d re-sent %d bytes\n%s" % (k + 1, r, why))
        self.assertLessEqual(u.sent, size + sum(p.end for p in u.passes[:-1]), why)
        # Each pass starts where it was asked to and is contiguous; the last ends at the size.
        self.assertEqual([p.start for p in u.passes], u.send_froms, why)
        self.assertEqual(u.passes[-1].end, size, why)
        self.assertEqual(u.passes[-1].sent, size, why)
        self.assertEqual(u.sent, sum(p.sent for p in u.passes), why)
        for p in u.passes:
            self.assertEqual(p.end - p.start, p.sent, "pass not contiguous: %r\n%s" % (p, why))
        # distribution 2.8 keeps a session whose PATCH was cut, yet answers 404 to
        # every request on it (GET, DELETE: "upload resumed at wrong offset"), so
        # no client can delete it; only its purge will. Nothing else is left.
        self.assertEqual(sorted(upload_sessions(REG, repo)), sorted(e.session for e in cut), why)
        self.assertLess(took, 60, why)

        # The blob in an image: PushImage names it by digest only, skopeo reads it back.
        PROXY.clear_faults()
        config = images.make_config({"org.example.upload": "big"})
        cu = self.upload(repo, config.data, host=PROXY.host, media_type=images.OCI_CONFIG)
        self.assertUploaded(cu, config.digest, config.size, media_type=images.OCI_CONFIG)
        spec = pb.ImageSpec(config=pb.BlobSource(digest=config.digest, size=config.size),
                            layers=[pb.BlobSource(digest=digest, size=size)])
        s = Stream(D.stub.PushImage(pb.PushImageRequest(ref="%s/%s:v1" % (PROXY.host, repo),
                                                        image=spec, retry=retry()), timeout=T))
        result, _ = self.assertPushStream(s, {config.digest: config.size, digest: size},
                                          "EXISTED")
        ref = "%s/%s:v1" % (REG.host, repo)
        info = json.loads(skopeo(["inspect", "--tls-verify=false", "--no-creds",
                                         "docker://" + ref]))
        self.assertEqual(info["Layers"], [digest])
        self.assertEqual(info["Digest"], result.descriptor.digest)
        dest = os.path.join(ENV.workdir, uniq("skopeo-big"))
        skopeo(["copy", "--quiet", "--src-tls-verify=false", "--src-no-creds",
                "docker://" + ref, "dir:" + dest])
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", dest]))
        layer_file = os.path.join(dest, digest.split(":", 1)[1])
        self.assertTrue(os.path.exists(layer_file), os.listdir(dest))
        self.assertEqual(os.path.getsize(layer_file), size)
        self.assertEqual(file_sha256(layer_file), digest)

    # Bytes a caller may have handed over past what regd had sent on when it
    # asks for a resend: BlobStream's buffer, one message crossing it, the
    # stream's HTTP/2 window (--stream_window, 1 MiB) and what the client's
    # gRPC holds (measured: 3-4 MiB past the refused chunk on this machine;
    # 12-16 MiB before the window was fixed).
    READ_AHEAD = MAX_BUFFERED + 1 * MiB + 1 * MiB + 2560 * 1024



# -- 4./5. mismatches: INVALID_ARGUMENT, nothing committed, no session left --------------------------

class MismatchTest(UploadCase):
    SIZES = (3 * MiB, 20 * MiB)   # one PUT; three PATCHes

    def assertRefused(self, u, repo, digests, details_has):
        ups = self.uploads(repo)
        why = self.explain(u, ups)
        self.assertEqual(u.code, INVALID, why)
        self.assertIn(details_has, u.details, why)
        self.assertIsNone(u.result, why)
        self.assertNotIn("result", u.kinds(), why)
        self.assertNothingCommitted(repo, digests, why)
        self.assertNoSessions(repo, why)
        # Nothing committed on the wire either: no PUT that the registry took.
        self.assertEqual([e for e in ups if e.method == "PUT" and e.status == 201], [], why)
        return ups

    def test_digest_mismatch(self):
        for size in self.SIZES:
            with self.subTest(size=size):
                PROXY.reset_counters()
                data, path = self.blob_file(size)
                declared = sha256(data[:-1] + bytes([data[-1] ^ 1]))  # the last byte differs
                repo = self.repo("digest-%d" % size)
                u = self.upload(repo, FileSource(path), digest=declared, host=PROXY.host)
                ups = self.assertRefused(u, repo, [declared, sha256(data)], declared)
                self.assertIn(sha256(data), u.details, u.summary())
                # The last bytes were held back: the registry never got the whole blob.
                session_bytes = {}
                for e in ups:
                    if e.session:
                        session_bytes[e.session] = session_bytes.get(e.session, 0) + e.body_fwd
                self.assertTrue(all(n < size for n in session_bytes.values()),
                                self.explain(u, ups))
        self.assertServing()

    def test_half_close_before_the_last_byte(self):
        for size, close_after in ((3 * MiB, 2 * MiB), (20 * MiB, 12 * MiB)):
            with self.subTest(size=size):
                PROXY.reset_counters()
                data, path = self.blob_file(size)
                repo = self.repo("short-%d" % size)
                u = self.upload(repo, FileSource(path), digest=sha256(data), host=PROXY.host,
                                close_after=close_after)
                self.assertEqual(u.half_closed_at, close_after, u.summary())
                self.assertEqual(u.sent, close_after, u.summary())
                self.assertRefused(u, repo, [sha256(data)], "closed its side")
                self.assertIn("at offset %d" % close_after, u.details, u.summary())
        self.assertServing()

    def test_chunk_past_the_end(self):
        # The last chunk 100 bytes too long (at the offset regd expects), or a
        # chunk at another offset that runs past the end: either is refused.
        for size, past_end in ((3 * MiB, "last"), (20 * MiB, "last"), (20 * MiB, 10 * MiB)):
            with self.subTest(size=size, past_end=past_end):
                PROXY.reset_counters()
                data, path = self.blob_file(size)
                repo = self.repo("past-%d" % size)
                u = self.upload(repo, FileSource(path), digest=sha256(data), host=PROXY.host,
                                past_end=past_end)
                self.assertRefused(u, repo, [sha256(data)], "goes past")
        self.assertServing()


# -- 6. chunks at offsets regd did not ask for --------------------------------------------------------

class StaleChunkTest(UploadCase):
    def test_chunks_at_wrong_offsets_are_dropped(self):
        size = 12 * MiB
        data, path = self.blob_file(size)
        digest = sha256(data)
        repo = self.repo()
        junk = b"J" * 5000
        u = self.upload(repo, FileSource(path), digest=digest, host=PROXY.host,
                        junk=[(12345, junk), (7, junk)],          # before any send_from
                        junk_after_ask=[(12345, junk), (MiB, junk), (size - 5000, junk)])
        why = self.explain(u, self.uploads(repo))
        self.assertUploaded(u, digest, size)
        self.assertEqual(u.send_froms, [0], why)
        self.assertEqual(u.junk_sent, 5 * len(junk), why)
        self.assertEqual(u.sent, size + u.junk_sent, why)
        self.assertEqual(u.retries(), [], why)
        self.assertLanded(repo, digest, size)
        self.assertEqual(PROXY.upload_bytes(), size, why)


# -- 7. protocol errors ------------------------------------------------------------------------------

class ProtocolTest(UploadCase):
    def start(self, repo=None, digest=None, size=1000):
        return pb.UploadBlobStart(repo="%s/%s" % (REG.host, repo or self.repo()),
                                  digest=digest if digest is not None else sha256(b"x" * size),
                                  size=size, retry=retry())

    def assertFailsFast(self, requests, code, details_has, hold_open=True):
        t0 = time.monotonic()
        events, err = (held_open_call if hold_open else raw_call)(D.stub, requests)
        took = time.monotonic() - t0
        self.assertIsNotNone(err, "want %s, got events %s" % (code.name, events))
        self.assertEqual(err.code(), code, err.details())
        self.assertIn(details_has, err.details())
        self.assertNotIn("result", [e.WhichOneof("event") for e in events])
        self.assertLess(took, 5, "took %.1fs" % took)
        self.assertServing()

    def test_first_message_not_start(self):
        chunk = pb.UploadBlobRequest(chunk=pb.UploadChunk(offset=0, data=b"x" * 1000))
        self.assertFailsFast([chunk], INVALID, "must be start")
        self.assertFailsFast([chunk, pb.UploadBlobRequest(start=self.start())], INVALID,
                             "must be start")

    def test_empty_first_message(self):
        self.assertFailsFast([pb.UploadBlobRequest()], INVALID, "must be start")

    def test_closed_before_start(self):
        self.assertFailsFast([], INVALID, "before its start", hold_open=False)

    def test_bad_digests(self):
        for digest in ("", "sha256:xyz", "sha256:" + "A" * 64, "sha256:" + "0" * 63,
                       "md5:d41d8cd98f00b204e9800998ecf8427e", "sha256" + "0" * 64,
                       "sha256:" + "0" * 64 + "\n"):
            with self.subTest(digest=digest):
                self.assertFailsFast([pb.UploadBlobRequest(start=self.start(digest=digest))],
                                     INVALID, "")

    def test_bad_size_and_repo(self):
        cases = [
            (self.start(size=-1), "size"),
            (self.start(size=0, digest=sha256(b"x")), "empty blob"),
            (pb.UploadBlobStart(repo="%s/Bad Repo!" % REG.host, digest=sha256(b"x"), size=1), ""),
            (pb.UploadBlobStart(repo="", digest=sha256(b"x"), size=1), ""),
        ]
        for start, has in cases:
            with self.subTest(start=str(start)):
                self.assertFailsFast([pb.UploadBlobRequest(start=start)], INVALID, has)

    def test_second_start(self):
        data = random_bytes(2 * MiB, uniq("second-start"))
        repo = self.repo()
        start = self.start(repo=repo, digest=sha256(data), size=len(data))
        chunk = pb.UploadBlobRequest(chunk=pb.UploadChunk(offset=0, data=data[:MiB]))
        self.assertFailsFast([pb.UploadBlobRequest(start=start), chunk,
                              pb.UploadBlobRequest(start=start)], INVALID, "second start")
        self.assertNothingCommitted(repo, [sha256(data)])
        self.assertNoSessions(repo)


# -- 8. the caller goes away ------------------------------------------------------------------------

class CancelTest(UploadCase):
    SIZE = 40 * MiB
    RATE = 8 * MiB   # an 8 MiB PATCH takes about a second

    def test_caller_cancels_mid_upload(self):
        data, path = self.blob_file(self.SIZE)
        digest = sha256(data)
        repo = self.repo()
        PROXY.add_fault("throttle", method="PATCH", path=r"^/v2/%s/" % repo, times=None,
                        rate=self.RATE)
        cancel_at = CHUNK + 2 * MiB    # during the second PATCH
        state = {}

        def on_event(up, ev):
            if (not state and ev.WhichOneof("event") == "progress"
                    and ev.progress.complete >= cancel_at):
                state["at"] = time.monotonic()
                state["sent"] = up.sent
                up.call.cancel()

        u = self.upload(repo, FileSource(path), digest=digest, host=PROXY.host,
                        on_event=on_event)
        self.assertIn("at", state, "never got to %d bytes\n%s" % (cancel_at, u.summary()))
        self.assertEqual(u.code, grpc.StatusCode.CANCELLED, u.summary())
        self.assertIsNone(u.result)
        try:
            util.wait_until(lambda: any(e.method == "DELETE" for e in self.uploads(repo)), 10,
                            what="a DELETE of the session")
        except TimeoutError:
            pass
        PROXY.wait_idle(settle=0.5)
        ups = self.uploads(repo)
        why = self.explain(u, ups)
        note("cancel: caller had sent", "%.1f MiB when it cancelled at %.1f MiB of progress"
             % (state["sent"] / float(MiB), cancel_at / float(MiB)))
        self.assertTrue(any(e.method == "PATCH" for e in ups), why)
        deletes = [e for e in ups if e.method == "DELETE"]
        self.assertEqual(len(deletes), 1, "regd abandons the session with a DELETE\n" + why)
        self.assertNoSessions(repo, why)
        self.assertNothingCommitted(repo, [digest], why)
        # regd stopped: nothing goes to the registry any more.
        n = len(PROXY.log())
        time.sleep(1)
        self.assertEqual(len(PROXY.log()), n, why)
        self.assertServing()


# -- 9. memory ------------------------------------------------------------------------------------------

class MemoryTest(UploadCase):
    SIZE = 512 * MiB
    MAX_HWM_KB = 96 * 1024

    def test_512mib_from_a_generator_stays_small(self):
        d = Daemon(ENV.workdir, insecure_registries=[REG.host],
                   extra_args=["--chunk_size=%d" % CHUNK], rpc_timeout=T)
        ENV.logs.append(("regd-memory", d.stderr_path))
        d.start()
        self.addCleanup(d.kill)
        source = PatternSource(self.SIZE, "memory")
        digest = source.digest()
        repo = self.repo()
        hwm_before = proc_status(d.proc.pid, "VmHWM")
        rss = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                v = proc_status(d.proc.pid, "VmRSS")
                if v:
                    rss.append(v)
                stop.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        try:
            u = self.upload(repo, source, digest=digest, stub=d.stub, timeout=120)
        finally:
            stop.set()
            sampler.join(2)
        took = time.monotonic() - t0
        hwm = proc_status(d.proc.pid, "VmHWM")
        note("512 MiB streamed", "%.1fs; VmHWM %d kB before, %d kB after (VmRSS peak seen %d kB)"
             % (took, hwm_before, hwm, max(rss or [0])))
        self.assertUploaded(u, digest, self.SIZE)
        self.assertEqual(u.send_froms, [0], u.summary())
        self.assertEqual(u.sent, self.SIZE, u.summary())
        self.assertEqual(head_blob(REG.url, repo, digest), 200)
        blob_file = REG.blob_data_path(digest)
        self.assertEqual(os.path.getsize(blob_file), self.SIZE)
        self.assertEqual(file_sha256(blob_file), digest)
        self.assertLess(hwm, self.MAX_HWM_KB, "VmHWM %d kB" % hwm)
        d.stop()


class StreamBudgetTest(UploadCase):
    def test_streams_draw_from_the_inline_memory_budget(self):
        # 4 MiB of budget: one stream (3 MiB) fits, a second at the same time does not.
        d = Daemon(ENV.workdir, insecure_registries=[REG.host, PROXY.host],
                   extra_args=["--chunk_size=%d" % CHUNK, "--inline_memory=%d" % (4 * MiB)],
                   rpc_timeout=T)
        ENV.logs.append(("regd-budget", d.stderr_path))
        d.start()
        self.addCleanup(d.kill)
        repo = self.repo()
        PROXY.add_fault("throttle", method="PATCH", path=r"^/v2/%s/" % repo, times=None,
                        rate=4 * MiB)
        data_a, path_a = self.blob_file(12 * MiB, "a")
        asked = threading.Event()
        holder = {}

        def run_a():
            holder["a"] = self.upload(repo, FileSource(path_a), digest=sha256(data_a),
                                      host=PROXY.host, stub=d.stub,
                                      on_event=lambda up, ev: ev.WhichOneof("event") ==
                                      "send_from" and asked.set())
        t = threading.Thread(target=run_a)
        t.start()
        self.assertTrue(asked.wait(20), "stream A was never asked for bytes")
        data_b, _ = self.blob_file(64 * 1024, "b")
        b = self.upload(repo, data_b, host=PROXY.host, stub=d.stub)
        self.assertEqual(b.code, grpc.StatusCode.RESOURCE_EXHAUSTED, b.summary())
        self.assertIn("--inline_memory", b.details, b.summary())
        self.assertEqual(b.sent, 0, b.summary())
        t.join(60)
        self.assertUploaded(holder["a"], sha256(data_a), len(data_a))
        # The budget is whole again.
        again = self.upload(repo, data_b, host=PROXY.host, stub=d.stub)
        self.assertUploaded(again, sha256(data_b), len(data_b))
        d.stop()


# -- 10. PushImage with digest-only BlobSources ----------------------------------------------------------

class DigestOnlyPushTest(UploadCase):
    def push(self, ref, spec):
        return Stream(D.stub.PushImage(pb.PushImageRequest(ref=ref, image=spec, retry=retry()),
                                       timeout=T))

    def test_uploaded_blobs_push_as_existed(self):
        repo = self.repo()
        config = images.make_config({"org.example.upload": "digest-only"})
        layer = images.Blob(random_bytes(10 * MiB, uniq("layer")), images.OCI_LAYER_GZIP)
        cu = self.upload(repo, config.data, media_type=images.OCI_CONFIG)
        self.assertUploaded(cu, config.digest, config.size, media_type=images.OCI_CONFIG)
        lu = self.upload(repo, layer.data)
        self.assertUploaded(lu, layer.digest, layer.size)
        PROXY.reset_counters()
        spec = pb.ImageSpec(config=pb.BlobSource(digest=config.digest, size=config.size),
                            layers=[pb.BlobSource(digest=layer.digest, size=layer.size)])
        s = self.push("%s/%s:v1" % (PROXY.host, repo), spec)
        result, _ = self.assertPushStream(s, {config.digest: config.size,
                                              layer.digest: layer.size}, "EXISTED")
        self.assertEqual(PROXY.upload_bytes(), 0, s.summary())
        self.assertEqual(PROXY.log(method="POST"), [], s.summary())
        raw = images.skopeo_inspect_raw("%s/%s:v1" % (REG.host, repo))
        self.assertEqual(sha256(raw), result.descriptor.digest)
        m = json.loads(raw)
        self.assertEqual(m["mediaType"], images.OCI_MANIFEST)
        self.assertEqual(m["config"], {"mediaType": images.OCI_CONFIG, "digest": config.digest,
                                       "size": config.size})
        self.assertEqual(m["layers"], [{"mediaType": images.OCI_LAYER_GZIP,
                                        "digest": layer.digest, "size": layer.size}])
        info = images.skopeo_inspect("%s/%s:v1" % (REG.host, repo))
        self.assertEqual(info["Labels"], {"org.example.upload": "digest-only"})

    def test_digest_only_mounts_from_mount_from(self):
        src = self.repo("src")
        dst = self.repo("dst")
        config = images.make_config({"org.example.upload": "mount"})
        layer = images.Blob(random_bytes(3 * MiB, uniq("layer")), images.OCI_LAYER_GZIP)
        self.assertUploaded(self.upload(src, layer.data), layer.digest, layer.size)
        spec = pb.ImageSpec(config=pb.BlobSource(data=config.data),
                            layers=[pb.BlobSource(digest=layer.digest, size=layer.size,
                                                  mount_from=src)])
        s = self.push("%s/%s:v1" % (REG.host, dst), spec)
        self.assertPushStream(s, {config.digest: config.size, layer.digest: layer.size},
                              {config.digest: "UPLOADED", layer.digest: "MOUNTED"})
        self.assertEqual(head_blob(REG.url, dst, layer.digest), 200)
        self.assertEqual(manifest_status(dst, "v1"), 200)

    def test_absent_digest_only_layer_fails_precondition(self):
        repo = self.repo()
        config = images.make_config({"org.example.upload": "absent"})
        present = images.Blob(random_bytes(1 * MiB, uniq("present")), images.OCI_LAYER_GZIP)
        absent = images.Blob(random_bytes(1 * MiB, uniq("absent")), images.OCI_LAYER_GZIP)
        self.assertUploaded(self.upload(repo, present.data), present.digest, present.size)
        for mount_from in ("", self.repo("empty")):
            with self.subTest(mount_from=mount_from):
                spec = pb.ImageSpec(config=pb.BlobSource(data=config.data),
                                    layers=[pb.BlobSource(digest=present.digest,
                                                          size=present.size),
                                            pb.BlobSource(digest=absent.digest, size=absent.size,
                                                          mount_from=mount_from)])
                s = self.push("%s/%s:v1" % (REG.host, repo), spec)
                self.assertEqual(s.code, grpc.StatusCode.FAILED_PRECONDITION, s.summary())
                self.assertIn(absent.digest, s.details, s.summary())
                self.assertNotIn("result", s.kinds(), s.summary())
                self.assertEqual(manifest_status(repo, "v1"), 404, "the tag exists")
                self.assertEqual(head_blob(REG.url, repo, absent.digest), 404)

    def test_digest_only_needs_its_size(self):
        repo = self.repo()
        layer = images.Blob(random_bytes(1000, uniq("layer")), images.OCI_LAYER_GZIP)
        self.assertUploaded(self.upload(repo, layer.data), layer.digest, layer.size)
        config = images.make_config({"org.example.upload": "nosize"})
        spec = pb.ImageSpec(config=pb.BlobSource(data=config.data),
                            layers=[pb.BlobSource(digest=layer.digest)])
        s = self.push("%s/%s:v1" % (REG.host, repo), spec)
        self.assertEqual(s.code, INVALID, s.summary())
        self.assertIn("size", s.details, s.summary())
        self.assertEqual(manifest_status(repo, "v1"), 404)


if __name__ == "__main__":
    testing.main("test_upload_blob")
