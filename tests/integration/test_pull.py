#!/usr/bin/python3
"""Resumable reads: ReadBlob through faults, and PullImage into an OCI layout.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_pull.py [-k name]

A real docker-registry 2.8 behind two fault proxies (fixtures/fault_proxy.py):
one plain, one in the "closed_ranges" mode (go-containerregistry's registry:
a blob GET whose Range is not `bytes=a-b` answers 416). The proxies cut
responses part-way ("reset_response"), before any byte ("reset"), slow them
("throttle_response") and change their content ("corrupt_body"), and count the
response bytes they served, so each test shows what was sent again after a
fault. Layouts are checked with skopeo (inspect and a round trip back to the
registry with identical digests) and by re-hashing every blob file.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402

from fixtures import images, paths, stubs, testing  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.fault_proxy import FaultProxy  # noqa: E402
from fixtures.registry import Registry  # noqa: E402

S = stubs.load()
pb = S.registry_pb2
MiB = 1 << 20
T = 60

ENV = None
REG = None
PROXY = None    # plain
CPROXY = None   # closed ranges only
D = None
LAYOUTS = None
IMG = None      # a single image: 6 MiB + 1 MiB + small layers
IDX = None      # a two-platform index
SLOW = None     # a single image with one 12 MiB layer, for the kill test


def fast_retry(attempts=5):
    return pb.RetryConfig(max_attempts=attempts,
                          initial_delay=duration_pb2.Duration(nanos=50 * 1000 * 1000),
                          max_delay=duration_pb2.Duration(nanos=200 * 1000 * 1000))


def start_daemon():
    return Daemon(ENV.workdir, insecure_registries=[REG.host, PROXY.host, CPROXY.host],
                  allowed_paths=[LAYOUTS])


def setUpModule():
    global ENV, REG, PROXY, CPROXY, D, LAYOUTS, IMG, IDX, SLOW
    ENV = testing.Env(prefix="regd-pull-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    REG = ENV.enter(Registry(ENV.workdir, auth="none"), "registry")
    PROXY = ENV.enter(FaultProxy(REG.host))
    CPROXY = ENV.enter(FaultProxy(REG.host, modes=["closed_ranges"]))
    LAYOUTS = os.path.join(ENV.workdir, "layouts")
    os.makedirs(LAYOUTS)
    IMG = images.build_image("pull-single", {"org.example.pull": "single"},
                             layer_sizes=(6 * MiB + 17, MiB + 3, 2000))
    images.push(IMG, ENV.workdir, REG.host, "pull/single", "v1")
    amd = images.build_image("pull-amd64", {"org.example.arch": "amd64"},
                             {"os": "linux", "architecture": "amd64"}, layer_sizes=(300000,))
    arm = images.build_image("pull-arm64", {"org.example.arch": "arm64"},
                             {"os": "linux", "architecture": "arm64", "variant": "v8"},
                             layer_sizes=(200000, 5000))
    IDX = images.build_index([amd, arm], [amd.platform, arm.platform],
                             annotations={"org.example.index": "pull"})
    images.push(IDX, ENV.workdir, REG.host, "pull/multi", "v1")
    SLOW = images.build_image("pull-slow", {"org.example.pull": "slow"},
                              layer_sizes=(5000, 12 * MiB))
    images.push(SLOW, ENV.workdir, REG.host, "pull/slow", "v1")
    D = ENV.enter(start_daemon(), "regd")


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def read_blob(proxy, repo, digest, offset=0, retry=None):
    """(bytes, [RetryEvent]) of a ReadBlob through `proxy`."""
    req = pb.ReadBlobRequest(repo="%s/%s" % (proxy.host, repo), digest=digest, offset=offset,
                             retry=retry or fast_retry())
    data, retries = [], []
    for chunk in D.stub.ReadBlob(req, timeout=T):
        if chunk.HasField("retry"):
            self_check = not chunk.data
            assert self_check, "a retry chunk carries no data"
            retries.append(chunk.retry)
        data.append(chunk.data)
    return b"".join(data), retries


def pull(ref, layout, ref_name="", platform=None, all_platforms=False, stub=None, timeout=T,
         on_event=None):
    req = pb.PullImageRequest(ref=ref, layout=pb.OciLayout(path=layout, ref_name=ref_name),
                              all_platforms=all_platforms, retry=fast_retry())
    if platform:
        req.platform.CopyFrom(platform)
    events = []
    for e in (stub or D.stub).PullImage(req, timeout=timeout):
        events.append(e)
        if on_event:
            on_event(e)
    assert events and events[-1].HasField("result"), "the last message is the result"
    return events


def outcomes(events):
    name = pb.LayerResult.Outcome.Name
    return {e.blob_digest: name(e.layer.outcome) for e in events if e.HasField("layer")}


def blob_gets(proxy, digest):
    return [e for e in proxy.log(method="GET", kind="blob") if e.path.endswith(digest)]


def rehash_layout(test, layout):
    """Every file under blobs/ hashes to its name; returns the set of digests."""
    seen = set()
    for alg in os.listdir(os.path.join(layout, "blobs")):
        for name in os.listdir(os.path.join(layout, "blobs", alg)):
            path = os.path.join(layout, "blobs", alg, name)
            h = hashlib.new(alg)
            with open(path, "rb") as f:
                for piece in iter(lambda: f.read(MiB), b""):
                    h.update(piece)
            test.assertEqual(h.hexdigest(), name, "blob file %s does not hash to its name" % path)
            seen.add("%s:%s" % (alg, name))
    return seen


def index_entries(layout):
    with open(os.path.join(layout, "index.json")) as f:
        return json.load(f)["manifests"]


def skopeo(*args):
    res = subprocess.run([paths.SKOPEO] + list(args), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=120)
    if res.returncode != 0:
        raise AssertionError("skopeo %s failed: %s" % (" ".join(args), res.stderr.decode()))
    return res.stdout


def fresh_layout(name):
    path = os.path.join(LAYOUTS, name)
    shutil.rmtree(path, ignore_errors=True)
    return path


class Case(testing.IntegrationCase):
    def extra_logs(self):
        return [("regd (current)", D.stderr_path)]

    def setUp(self):
        for p in (PROXY, CPROXY):
            p.clear_faults()
            p.reset_counters()


class ReadBlobResumeTest(Case):
    def test_reset_mid_body_resumes_from_delivered_bytes(self):
        blob = IMG.layers[0]
        PROXY.add_fault("reset_response", method="GET", path=blob.digest, nth=1, after_bytes=MiB)
        PROXY.add_fault("reset_response", method="GET", path=blob.digest, nth=2,
                        after_bytes=2 * MiB)
        data, retries = read_blob(PROXY, "pull/single", blob.digest)
        self.assertEqual(len(data), blob.size)
        self.assertEqual(sha(data), blob.digest)
        self.assertEqual(len(retries), 2, retries)
        gets = blob_gets(PROXY, blob.digest)
        self.assertEqual(len(gets), 3, gets)
        self.assertIsNone(gets[0].header("range"))
        # Each resume asks for the first byte the caller lacks: no byte is
        # fetched twice beyond what a reset swallowed in flight.
        first = int(gets[1].header("range").split("=")[1].split("-")[0])
        second = int(gets[2].header("range").split("=")[1].split("-")[0])
        self.assertLessEqual(first, gets[0].body_out)
        self.assertGreater(first, 0)
        self.assertLessEqual(second - first, gets[1].body_out)
        served = PROXY.bytes_served(method="GET", kind="blob")
        resent = served - blob.size
        sys.stderr.write("[served %d bytes for a %d-byte blob: %d re-sent after 2 faults] "
                         % (served, blob.size, resent))
        self.assertLess(resent, 2 * MiB)

    def test_fast_path_message_size(self):
        blob = IMG.layers[0]
        req = pb.ReadBlobRequest(repo="%s/pull/single" % PROXY.host, digest=blob.digest)
        sizes = [len(c.data) for c in D.stub.ReadBlob(req, timeout=T)]
        self.assertEqual(sum(sizes), blob.size)
        self.assertEqual(max(sizes), 512 * 1024)

    def test_reset_before_first_byte(self):
        blob = IMG.layers[1]
        PROXY.add_fault("reset", method="GET", path=blob.digest, nth=1)
        PROXY.add_fault("reset_response", method="GET", path=blob.digest, nth=2, after_bytes=0)
        data, retries = read_blob(PROXY, "pull/single", blob.digest)
        self.assertEqual(data, blob.data)
        # libcurl itself sends a request again once when a reused connection
        # dies before any answer: then the first reset costs no retry of ours.
        self.assertIn(len(retries), (1, 2))
        self.assertGreaterEqual(len(blob_gets(PROXY, blob.digest)), 3)
        self.assertEqual(PROXY.bytes_served(method="GET", kind="blob"), blob.size)

    def test_resume_at_an_offset(self):
        blob = IMG.layers[0]
        PROXY.add_fault("reset_response", method="GET", path=blob.digest, nth=1,
                        after_bytes=3 * MiB)
        data, retries = read_blob(PROXY, "pull/single", blob.digest, offset=1000)
        self.assertEqual(data, blob.data[1000:])
        self.assertEqual(len(retries), 1)

    def test_503_then_body(self):
        blob = IMG.layers[1]
        PROXY.add_fault("status", method="GET", path=blob.digest, nth=1, times=2, status=503)
        data, retries = read_blob(PROXY, "pull/single", blob.digest)
        self.assertEqual(data, blob.data)
        self.assertEqual(len(retries), 2)

    def test_other_content_on_resume_is_data_loss(self):
        blob = IMG.layers[0]
        PROXY.add_fault("reset_response", method="GET", path=blob.digest, nth=1, after_bytes=MiB)
        PROXY.add_fault("corrupt_body", method="GET", path=blob.digest, nth=2)
        with self.assertRaises(grpc.RpcError) as cm:
            read_blob(PROXY, "pull/single", blob.digest)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DATA_LOSS, cm.exception.details())

    def test_last_chunk_held_until_verified(self):
        # A blob of exactly two messages: the second is not sent before the
        # digest is checked, so a corrupted blob never reaches the caller whole.
        data = os.urandom(1 << 20)
        digest = sha(data)
        for e in D.stub.WriteLayer(pb.WriteLayerRequest(
                repo="%s/pull/aligned" % REG.host, layer=pb.BlobSource(data=data)), timeout=T):
            pass
        PROXY.add_fault("corrupt_body", method="GET", path=digest, nth=1)
        got = []
        with self.assertRaises(grpc.RpcError) as cm:
            for c in D.stub.ReadBlob(pb.ReadBlobRequest(repo="%s/pull/aligned" % PROXY.host,
                                                        digest=digest), timeout=T):
                got.append(c.data)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DATA_LOSS)
        self.assertLessEqual(sum(map(len, got)), len(data) - 512 * 1024)
        whole, _ = read_blob(PROXY, "pull/aligned", digest)
        self.assertEqual(whole, data)

    def test_other_size_on_resume_is_data_loss_at_once(self):
        blob = IMG.layers[0]
        PROXY.add_fault("reset_response", method="GET", path=blob.digest, nth=1, after_bytes=MiB)
        PROXY.add_fault("status", method="GET", path=blob.digest, nth=2, status=206,
                        headers={"Content-Range": "bytes %d-%d/%d" % (0, 99, blob.size + 100)},
                        body=b"x" * 100)
        with self.assertRaises(grpc.RpcError) as cm:
            read_blob(PROXY, "pull/single", blob.digest, offset=0)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DATA_LOSS)
        self.assertEqual(len(blob_gets(PROXY, blob.digest)), 2)

    def test_gives_up_after_attempts_without_progress(self):
        blob = IMG.layers[1]
        PROXY.add_fault("reset", method="GET", path=blob.digest, nth=1, times=None)
        with self.assertRaises(grpc.RpcError) as cm:
            read_blob(PROXY, "pull/single", blob.digest, retry=fast_retry(3))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        # Three attempts; libcurl itself sends a request again once when a
        # reused connection dies before any answer.
        self.assertIn(len(blob_gets(PROXY, blob.digest)), (3, 4))

    def test_registry_that_ignores_ranges(self):
        # Offsets and resumes still give exactly the bytes asked for: the
        # whole blob comes back each time and the bytes before are dropped.
        blob = IMG.layers[0]
        PROXY.set_modes(["ignore_ranges"])
        try:
            PROXY.add_fault("reset_response", method="GET", path=blob.digest, nth=1,
                            after_bytes=2 * MiB)
            data, retries = read_blob(PROXY, "pull/single", blob.digest)
            self.assertEqual(sha(data), blob.digest)
            self.assertEqual(len(retries), 1)
            data, _ = read_blob(PROXY, "pull/single", blob.digest, offset=12345)
            self.assertEqual(data, blob.data[12345:])
            self.assertGreaterEqual(PROXY.quirk_hits().get("ignore_ranges", 0), 2)
            layout = fresh_layout("ignored-ranges")
            PROXY.add_fault("reset_response", method="GET", path=blob.digest, nth=3,
                            after_bytes=3 * MiB)
            pull("%s/pull/single:v1" % PROXY.host, layout)
            rehash_layout(self, layout)
        finally:
            PROXY.set_modes([])

    def test_closed_ranges_resume_and_offsets(self):
        blob = IMG.layers[0]
        CPROXY.add_fault("reset_response", method="GET", path=blob.digest, nth=1,
                         after_bytes=2 * MiB)
        data, retries = read_blob(CPROXY, "pull/single", blob.digest)
        self.assertEqual(sha(data), blob.digest)
        ranges = [e.header("range") for e in blob_gets(CPROXY, blob.digest)]
        self.assertTrue(any(r and r.endswith("-%d" % (blob.size - 1)) for r in ranges), ranges)
        for offset in (1, blob.size // 2, blob.size - 1):
            with self.subTest(offset=offset):
                data, _ = read_blob(CPROXY, "pull/single", blob.digest, offset=offset)
                self.assertEqual(data, blob.data[offset:])
        with self.assertRaises(grpc.RpcError) as cm:
            read_blob(CPROXY, "pull/single", blob.digest, offset=blob.size + 5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.OUT_OF_RANGE)


class LeanReadTest(Case):
    """With --inline_memory too small for ReadBlob's fast path (4 MiB of
    buffers and a hashing thread), reads take the lean path: 64 KiB messages,
    hashed inline; resume and verification work the same."""

    def test_lean_path_reads_and_resumes(self):
        # 4 MiB, the least --inline_memory there is: one slow read holds it all.
        d = Daemon(ENV.workdir, insecure_registries=[PROXY.host],
                   extra_args=["--inline_memory=4194304"]).start()
        slow = SLOW.layers[1]
        PROXY.add_fault("throttle_response", method="GET", path=slow.digest, times=None,
                        rate=MiB)
        holder = d.stub.ReadBlob(pb.ReadBlobRequest(repo="%s/pull/slow" % PROXY.host,
                                                    digest=slow.digest), timeout=T)
        try:
            self.assertEqual(len(next(holder).data), 512 * 1024)  # the fast path
            blob = IMG.layers[0]
            PROXY.add_fault("reset_response", method="GET", path=blob.digest, nth=1,
                            after_bytes=MiB)
            req = pb.ReadBlobRequest(repo="%s/pull/single" % PROXY.host, digest=blob.digest,
                                     retry=fast_retry())
            chunks = list(d.stub.ReadBlob(req, timeout=T))
            data = b"".join(c.data for c in chunks)
            self.assertEqual(sha(data), blob.digest)
            self.assertEqual(sum(1 for c in chunks if c.HasField("retry")), 1)
            self.assertLessEqual(max(len(c.data) for c in chunks), 64 * 1024)
            PROXY.add_fault("corrupt_body", method="GET", path=IMG.layers[1].digest, nth=1)
            req = pb.ReadBlobRequest(repo="%s/pull/single" % PROXY.host,
                                     digest=IMG.layers[1].digest)
            with self.assertRaises(grpc.RpcError) as cm:
                list(d.stub.ReadBlob(req, timeout=T))
            self.assertEqual(cm.exception.code(), grpc.StatusCode.DATA_LOSS)
        finally:
            holder.cancel()
            d.stop()


class PullImageTest(Case):
    def assertSkopeoRoundTrip(self, layout, ref_name, top, all_platforms=False):
        raw = skopeo("inspect", "--raw", "oci:%s:%s" % (layout, ref_name))
        self.assertEqual(sha(raw), top)
        dest = "%s/roundtrip/%s:%s" % (REG.host, os.path.basename(layout), ref_name)
        args = ["copy", "--dest-tls-verify=false", "--preserve-digests", "--quiet"]
        if all_platforms:
            args.append("--all")
        skopeo(*(args + ["oci:%s:%s" % (layout, ref_name), "docker://" + dest]))
        back = skopeo("inspect", "--raw", "--tls-verify=false", "docker://" + dest)
        self.assertEqual(sha(back), top)

    def test_single_image(self):
        layout = fresh_layout("single")
        events = pull("%s/pull/single:v1" % PROXY.host, layout)
        result = events[-1].result.descriptor
        self.assertEqual(result.digest, IMG.digest)
        self.assertEqual(set(outcomes(events)), {b.digest for b in IMG.blobs()})
        self.assertEqual(set(outcomes(events).values()), {"DOWNLOADED"})
        self.assertTrue(any(e.HasField("progress") for e in events))
        have = rehash_layout(self, layout)
        self.assertEqual(have, {b.digest for b in images.all_blobs(IMG)})
        entries = index_entries(layout)
        self.assertEqual(len(entries), 1)
        self.assertEqual(entries[0]["annotations"]["org.opencontainers.image.ref.name"], "v1")
        self.assertEqual(entries[0]["digest"], IMG.digest)
        self.assertSkopeoRoundTrip(layout, "v1", IMG.digest)
        self.assertFalse(os.listdir(os.path.join(layout, ".regd-partial")))
        # Again: every blob is there, verified, not fetched.
        PROXY.reset_counters()
        events = pull("%s/pull/single:v1" % PROXY.host, layout)
        self.assertEqual(set(outcomes(events).values()), {"EXISTED"})
        self.assertEqual(blob_gets(PROXY, IMG.layers[0].digest), [])
        self.assertEqual(len(index_entries(layout)), 1)

    def test_adds_to_a_layout_and_replaces_a_damaged_blob(self):
        layout = fresh_layout("shared")
        pull("%s/pull/single:v1" % PROXY.host, layout, ref_name="one")
        # A blob damaged on disk is not trusted: fetched again.
        victim = IMG.layers[1]
        with open(os.path.join(layout, "blobs", "sha256", victim.hex), "r+b") as f:
            f.write(b"\0\0\0")
        events = pull("%s/pull/single@%s" % (PROXY.host, IMG.digest), layout, ref_name="two")
        self.assertEqual(outcomes(events)[victim.digest], "DOWNLOADED")
        self.assertEqual(outcomes(events)[IMG.layers[0].digest], "EXISTED")
        names = sorted(e["annotations"]["org.opencontainers.image.ref.name"]
                       for e in index_entries(layout))
        self.assertEqual(names, ["one", "two"])
        rehash_layout(self, layout)
        self.assertSkopeoRoundTrip(layout, "two", IMG.digest)

    def test_one_platform_of_an_index(self):
        layout = fresh_layout("arm64")
        arm = IDX.child("linux", "arm64", "v8")
        events = pull("%s/pull/multi:v1" % PROXY.host, layout,
                      platform=pb.Platform(os="linux", architecture="arm64"))
        self.assertEqual(events[-1].result.descriptor.digest, arm.digest)
        self.assertEqual(events[-1].result.descriptor.platform.architecture, "arm64")
        entries = index_entries(layout)
        self.assertEqual(entries[0]["digest"], arm.digest)
        self.assertEqual(entries[0]["platform"]["architecture"], "arm64")
        self.assertEqual(rehash_layout(self, layout), {b.digest for b in images.all_blobs(arm)})
        self.assertSkopeoRoundTrip(layout, "v1", arm.digest)

    def test_whole_index(self):
        layout = fresh_layout("all")
        events = pull("%s/pull/multi:v1" % PROXY.host, layout, all_platforms=True)
        self.assertEqual(events[-1].result.descriptor.digest, IDX.digest)
        self.assertEqual(rehash_layout(self, layout), {b.digest for b in images.all_blobs(IDX)})
        self.assertSkopeoRoundTrip(layout, "v1", IDX.digest, all_platforms=True)

    def test_index_needs_a_choice(self):
        with self.assertRaises(grpc.RpcError) as cm:
            pull("%s/pull/multi:v1" % PROXY.host, fresh_layout("nochoice"))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)

    def test_faults_and_closed_ranges(self):
        layout = fresh_layout("faults")
        big = IMG.layers[0]
        CPROXY.add_fault("reset_response", method="GET", path=big.digest, nth=1,
                         after_bytes=2 * MiB)
        CPROXY.add_fault("status", method="GET", path=IMG.layers[1].digest, nth=1, status=503)
        events = pull("%s/pull/single:v1" % CPROXY.host, layout)
        self.assertEqual(events[-1].result.descriptor.digest, IMG.digest)
        self.assertGreaterEqual(sum(1 for e in events if e.HasField("retry")), 2)
        # The whole blob, cut; `bytes=N-` refused (416); `bytes=N-LAST`.
        gets = blob_gets(CPROXY, big.digest)
        self.assertEqual([g.status for g in gets], [200, 416, 206], gets)
        self.assertRegex(gets[1].header("range") or "", r"^bytes=[1-9]\d*-$")
        self.assertRegex(gets[2].header("range") or "", r"^bytes=[1-9]\d*-%d$" % (big.size - 1))
        served = CPROXY.bytes_served(method="GET", kind="blob")
        self.assertLess(served - sum(b.size for b in IMG.blobs()), MiB)
        rehash_layout(self, layout)
        self.assertSkopeoRoundTrip(layout, "v1", IMG.digest)

    def test_paths_outside_allowed_are_refused(self):
        for path in (os.path.join(ENV.workdir, "elsewhere"), "relative/dir",
                     os.path.join(LAYOUTS, "..", "escape")):
            with self.subTest(path=path):
                with self.assertRaises(grpc.RpcError) as cm:
                    pull("%s/pull/single:v1" % PROXY.host, path)
                self.assertIn(cm.exception.code(), (grpc.StatusCode.PERMISSION_DENIED,
                                                     grpc.StatusCode.INVALID_ARGUMENT))
        self.assertFalse(os.path.exists(os.path.join(ENV.workdir, "elsewhere")))
        self.assertFalse(os.path.exists(os.path.join(ENV.workdir, "escape")))
        # A symlink out of the allowed directory is not followed.
        link = os.path.join(LAYOUTS, "link-out")
        if not os.path.islink(link):
            os.symlink(ENV.workdir, link)
        with self.assertRaises(grpc.RpcError) as cm:
            pull("%s/pull/single:v1" % PROXY.host, os.path.join(link, "x"))
        self.assertIn(cm.exception.code(), (grpc.StatusCode.PERMISSION_DENIED,
                                             grpc.StatusCode.INVALID_ARGUMENT))
        self.assertFalse(os.path.exists(os.path.join(ENV.workdir, "x")))


class KillMidPullTest(Case):
    def test_restart_resumes_from_disk(self):
        global D
        layout = fresh_layout("killed")
        small, big = SLOW.layers
        PROXY.add_fault("throttle_response", method="GET", path=big.digest, nth=1, times=None,
                        rate=2 * MiB)
        got_bytes = threading.Event()
        seen = {}

        def on_event(e):
            if e.HasField("progress") and e.blob_digest == big.digest:
                seen["big"] = e.progress.complete
                if e.progress.complete >= 3 * MiB:
                    got_bytes.set()
            if e.HasField("layer"):
                seen[e.blob_digest] = e.layer.outcome

        errors = []

        def run():
            try:
                pull("%s/pull/slow:v1" % PROXY.host, layout, on_event=on_event)
            except grpc.RpcError as e:
                errors.append(e)

        t = threading.Thread(target=run)
        t.start()
        self.assertTrue(got_bytes.wait(30), "no progress on the big layer: %s" % seen)
        D.kill()
        D.proc = None  # killed on purpose: its clean-up must not call that a failure
        t.join(30)
        self.assertEqual(len(errors), 1)
        # Killed: no index.json entry, no blob under the big digest, and the
        # partial file holds the bytes so far.
        self.assertFalse(os.path.exists(os.path.join(layout, "blobs", "sha256", big.hex)))
        partial = os.path.join(layout, ".regd-partial", "sha256-" + big.hex)
        on_disk = os.path.getsize(partial)
        self.assertGreater(on_disk, MiB)
        self.assertFalse(os.path.exists(os.path.join(layout, "index.json")))
        rehash_layout(self, layout)
        small_done = os.path.exists(os.path.join(layout, "blobs", "sha256", small.hex))

        PROXY.clear_faults()
        PROXY.reset_counters()
        D = start_daemon().start()
        ENV.callback(D.stop, False)
        events = pull("%s/pull/slow:v1" % PROXY.host, layout)
        self.assertEqual(events[-1].result.descriptor.digest, SLOW.digest)
        gets = blob_gets(PROXY, big.digest)
        self.assertEqual(len(gets), 1, gets)
        self.assertEqual(gets[0].header("range"), "bytes=%d-" % on_disk)
        self.assertEqual(gets[0].body_out, big.size - on_disk)
        if small_done:
            self.assertEqual(blob_gets(PROXY, small.digest), [])
            self.assertEqual(outcomes(events)[small.digest], "EXISTED")
        sys.stderr.write("[after the restart: %d of %d bytes fetched, %d were on disk] "
                         % (gets[0].body_out, big.size, on_disk))
        self.assertEqual(rehash_layout(self, layout), {b.digest for b in images.all_blobs(SLOW)})
        self.assertSkopeoRoundTrip(layout, "v1", SLOW.digest)

    assertSkopeoRoundTrip = PullImageTest.assertSkopeoRoundTrip


if __name__ == "__main__":
    testing.main("pull")
