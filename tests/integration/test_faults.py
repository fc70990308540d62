#!/usr/bin/python3
"""Integration tests for regd's uploads through a fault-injecting proxy.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_faults.py [-k name]

regd talks to docker-registry 2.8 only through fixtures/fault_proxy.py, which
resets connections (mid-body, or before anything of a request went through),
answers 5xx/429/403/401 itself, delays answers and throttles bodies, and counts
the body bytes it received from regd and forwarded to the registry. The daemon
runs with --chunk_size=4MiB and --stall_timeout=3s; the retry policy of every
call has a 50 ms initial delay and max_attempts=MAX.

Every test checks that the upload completes (the blob is in the registry), the
RetryEvents on the stream (attempt numbers, max_attempts, error text), the
requests the proxy saw (resume with a GET before re-sending data; a fresh
session only where distribution 2.8 dropped the old one), and the bytes re-sent.

A token-auth registry (behind a second proxy) hands out tokens that the
registry stops accepting a few seconds after they were issued, although the
issuer says they live 300 s: a long upload sees real 401s mid-way.
"""

import http.server
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import images, stubs, testing  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.fault_proxy import FaultProxy, http_date  # noqa: E402
from fixtures.registry import Registry  # noqa: E402
from fixtures.token_issuer import TokenIssuer  # noqa: E402
from fixtures.uploads import (Stream, StreamChecks, head_blob,  # noqa: E402
                              random_bytes, retry_config, seconds, sha256, upload_sessions,
                              write_file)

S = stubs.load()
pb = S.registry_pb2
T = 60
MiB = 1 << 20
CHUNK = 4 * MiB
SIZE = 6 * CHUNK          # the usual blob: six full chunks
MAX = 6                   # max_attempts of every call here
STALL = 3                 # --stall_timeout, seconds
TOKEN_USER = ("bob", "builder")
# distribution 2.8 accepts a token up to 60 s past its `exp` claim (clock skew leeway).
REGISTRY_LEEWAY = 60

ENV = None
REG = None
PROXY = None
TREG = None
TPROXY = None
ISSUER = None
D = None
STORAGE = None
BLOBS = None
_n = [0]


class ShortLivedIssuer(TokenIssuer):
    """Says tokens live `expires_in` seconds but signs them so that the registry
    accepts them for only `jwt_lifetime` seconds (None: as long as it says)."""

    jwt_lifetime = None

    def make_token(self, user, scopes, expires_in=None):
        if self.jwt_lifetime is not None:
            expires_in = self.jwt_lifetime - REGISTRY_LEEWAY
        return super().make_token(user, scopes, expires_in)


def setUpModule():
    global ENV, REG, PROXY, TREG, TPROXY, ISSUER, D, BLOBS, STORAGE
    ENV = testing.Env(prefix="regd-faults-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    BLOBS = os.path.join(ENV.workdir, "blobs")
    os.makedirs(BLOBS)
    REG = ENV.enter(Registry(ENV.workdir, auth="none"), "registry-plain")
    PROXY = ENV.enter(FaultProxy(REG.host))
    ISSUER = ENV.enter(ShortLivedIssuer(os.path.join(ENV.workdir, "issuer"),
                                        users=dict([TOKEN_USER]), expires_in=300))
    TREG = ENV.enter(Registry(ENV.workdir, auth="token", token_issuer=ISSUER), "registry-token")
    TPROXY = ENV.enter(FaultProxy(TREG.host))
    # A plain-HTTP "storage host" that blob GETs get redirected to. regd follows
    # a redirect to plain HTTP only to a host listed in --insecure_registries.
    STORAGE = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StorageHandler)
    threading.Thread(target=STORAGE.serve_forever, daemon=True).start()
    ENV.callback(STORAGE.shutdown)
    storage_host = "127.0.0.1:%d" % STORAGE.server_port
    D = ENV.enter(Daemon(ENV.workdir, insecure_registries=[PROXY.host, TPROXY.host, storage_host],
                         allowed_paths=[BLOBS], auths={TPROXY.host: TOKEN_USER},
                         extra_args=["--chunk_size=%d" % CHUNK, "--stall_timeout=%ds" % STALL],
                         rpc_timeout=T), "regd")


def retry(max_attempts=MAX, initial_delay=0.05):
    return retry_config(pb, max_attempts=max_attempts, initial_delay=initial_delay)


class FaultCase(testing.IntegrationCase, StreamChecks):
    proxy = None  # set per class

    def setUp(self):
        for p in (PROXY, TPROXY):
            p.clear_faults()
            p.reset_counters()

    def tearDown(self):
        for p in (PROXY, TPROXY):
            p.clear_faults()
        self.assertTrue(D.alive(), "regd died:\n" + D.log())

    # -- helpers ------------------------------------------------------------------------
    def blob(self, size=SIZE):
        _n[0] += 1
        data = random_bytes(size, "%s-%d" % (self.id(), _n[0]))
        return data, write_file(BLOBS, "blob-%d" % _n[0], data)

    def repo(self):
        _n[0] += 1
        return "faults/%s-%d" % (self._testMethodName.replace("test_", "")[:40].replace("_", "-"),
                                 _n[0])

    def write(self, repo, path, retry_cfg=None, proxy=None):
        proxy = proxy or self.proxy
        return Stream(D.stub.WriteLayer(pb.WriteLayerRequest(
            repo="%s/%s" % (proxy.host, repo), layer=pb.BlobSource(path=path),
            retry=retry_cfg or retry()), timeout=T))

    def uploads(self, repo, proxy=None):
        proxy = proxy or self.proxy
        proxy.wait_idle()
        return [e for e in proxy.log(kind="upload") if e.path.startswith("/v2/%s/" % repo)]

    def explain(self, s, ups):
        return "%s\nrequests:\n  %s" % (s.summary(), "\n  ".join(
            "%s %s -> %s in=%d fwd=%d %s %s" % (e.method, e.session or "", e.status, e.body_in,
                                                e.body_fwd, e.header("Content-Range") or "",
                                                e.fault or "") for e in ups))

    @staticmethod
    def untouched_replay(ups, i):
        """True when request i died on a reused connection before libcurl had sent
        any of its body, and libcurl sent it again on a fresh connection: nothing
        of that request reached the registry, so the resend is no blind replay
        (libcurl refuses to resend a body it has begun, and regd gives it no way
        to rewind one)."""
        e, nxt = ups[i], ups[i + 1]
        return (e.status is None and e.body_in == 0 and nxt.method == e.method
                and nxt.path == e.path
                and nxt.header("Content-Range") == e.header("Content-Range"))

    def assertNoBlindReplay(self, ups, why):
        """After a PATCH or PUT whose outcome regd could not know (no answer, or a
        retryable error), the next request on the session asks first (GET) or opens a
        new session (POST); it never sends the data again straight away."""
        for i, e in enumerate(ups[:-1]):
            if e.method not in ("PATCH", "PUT") or e.status in (201, 202, 204, 401, 400):
                continue
            if self.untouched_replay(ups, i):
                continue
            nxt = ups[i + 1]
            self.assertIn(nxt.method, ("GET", "POST", "HEAD", "DELETE"),
                          "request %d (%s -> %s) was followed by a blind %s\n%s"
                          % (i, e.method, e.status, nxt.method, why))

    def assertLanded(self, reg, repo, data, token=None):
        self.assertEqual(head_blob(reg.url, repo, sha256(data), token), 200,
                         "blob not in the registry")


# -- resets ---------------------------------------------------------------------------------------

class ResetTest(FaultCase):
    proxy = property(lambda self: PROXY)

    def test_reset_mid_body_three_times(self):
        # distribution 2.8 appends what it got of a cut body, after which the
        # session's _state is stale and the session is dropped (404): regd starts
        # a fresh one; each fault costs at most the bytes sent into that session.
        data, path = self.blob()
        repo = self.repo()
        after = 1 * MiB
        for nth in (2, 4, 6):  # the 2nd PATCH of each of the first three sessions
            self.proxy.add_fault("reset_mid_body", method="PATCH", nth=nth, after_bytes=after)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(REG, repo, data)
        # Every fresh session dies before it gets past the most the registry
        # ever held (one chunk), so the attempts keep counting: a registry that
        # keeps dropping sessions cannot keep the upload going forever.
        self.assertRetryRuns(s.retries(), [[1, 2, 3]], MAX, summary=why)
        self.assertNoBlindReplay(ups, why)
        posts = [e for e in ups if e.method == "POST"]
        self.assertEqual(len(posts), 4, "one fresh session per dropped one\n" + why)
        fwd = self.proxy.upload_bytes()
        # Each fault: the session's first chunk plus `after` bytes of the second.
        self.assertLessEqual(fwd, SIZE + 3 * (CHUNK + after), why)
        self.assertGreaterEqual(fwd, SIZE + 3 * after, why)
        # The last session got the whole blob, once, in order.
        last = [e for e in ups if e.session == ups[-1].session and e.method == "PATCH"]
        self.assertEqual(sum(e.body_fwd for e in last), SIZE, why)

    def test_reset_mid_body_of_a_monolithic_put(self):
        data, path = self.blob(2 * MiB)
        repo = self.repo()
        self.proxy.add_fault("reset_mid_body", method="PUT", path=r"/blobs/uploads/", nth=1,
                             after_bytes=512 * 1024)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerStream(s, len(data), "UPLOADED")
        self.assertLanded(REG, repo, data)
        self.assertRetryRuns(s.retries(), [[1]], MAX, summary=why)
        self.assertNoBlindReplay(ups, why)
        fwd = self.proxy.upload_bytes()
        self.assertLessEqual(fwd, 2 * len(data), "more than one restart\n" + why)
        self.assertLessEqual(fwd, len(data) + 512 * 1024, why)

    def test_reset_between_chunks_resumes_the_session(self):
        # Nothing of the reset PATCH reaches the registry: the session survives,
        # regd asks where it stands (GET) and sends that chunk again.
        data, path = self.blob()
        repo = self.repo()
        for nth in (2, 4):
            self.proxy.add_fault("reset", method="PATCH", nth=nth)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(REG, repo, data)
        # Each reset is either retried by regd (RetryEvent, GET, resend), or, when
        # it hit a reused connection before any body byte left, resent by libcurl
        # on a fresh connection (see untouched_replay): nothing was lost either way.
        resent = len([i for i in range(len(ups) - 1) if self.untouched_replay(ups, i)])
        self.assertRetryRuns(s.retries(), [[1]] * (2 - resent), MAX, summary=why)
        self.assertNoBlindReplay(ups, why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 1, why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, why)
        self.assertLessEqual(self.proxy.bytes_received(kind="upload"), SIZE + 2 * CHUNK, why)


# -- answers from the proxy ------------------------------------------------------------------------

class StatusTest(FaultCase):
    proxy = property(lambda self: PROXY)

    def test_5xx_bursts_on_chunks(self):
        data, path = self.blob()
        repo = self.repo()
        # PATCH #1 ok; #2-4 500; #5 ok; #6-7 502; #8 ok; #9 503; then ok.
        self.proxy.add_fault("status", method="PATCH", nth=2, times=3, status=500)
        self.proxy.add_fault("status", method="PATCH", nth=6, times=2, status=502)
        self.proxy.add_fault("status", method="PATCH", nth=9, times=1, status=503)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(REG, repo, data)
        retries = s.retries()
        self.assertRetryRuns(retries, [[1, 2, 3], [1, 2], [1]], MAX, summary=why)
        for r, code in zip(retries, ["500"] * 3 + ["502"] * 2 + ["503"]):
            self.assertIn(code, r.error, why)
        self.assertNoBlindReplay(ups, why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 1, why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, "the registry got bytes twice\n" + why)
        self.assertEqual(self.proxy.bytes_received(kind="upload"), SIZE + 6 * CHUNK,
                         "each refused chunk is sent once more, no more\n" + why)

    def test_5xx_on_head_post_and_commit(self):
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("status", method="HEAD", path=r"/blobs/sha256:", nth=1, status=503)
        self.proxy.add_fault("status", method="POST", path=r"/blobs/uploads/", nth=1, times=2,
                             status=502)
        self.proxy.add_fault("status", method="PUT", path=r"/blobs/uploads/", nth=1, times=2,
                             status=500)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(REG, repo, data)
        # HEAD and the two POSTs share one count (no session, no bytes yet); the
        # commit's failures start a new one, as the last chunk was acknowledged.
        self.assertRetryRuns(s.retries(), [[1, 2, 3], [1, 2]], MAX, summary=why)
        self.assertEqual([r.error.split(":")[0] for r in s.retries()],
                         ["HEAD blob", "POST blob upload", "POST blob upload",
                          "PUT blob (commit)", "PUT blob (commit)"], why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, why)
        self.assertEqual(len([e for e in ups if e.method == "PATCH"]), SIZE // CHUNK, why)

    def test_429_with_retry_after_seconds(self):
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("status", method="PATCH", nth=2, status=429,
                             headers={"Retry-After": "2"})
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(REG, repo, data)
        self.assertRetryRuns(s.retries(), [[1]], MAX, error_has="429", summary=why)
        wait = seconds(s.retries()[0].next_retry_in)
        self.assertGreaterEqual(wait, 2.0, "Retry-After: 2 is a floor\n" + why)
        self.assertLess(wait, 3.0, why)
        self.assertWaited(ups, 429, 2.0, why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, why)

    def test_503_with_retry_after_http_date(self):
        data, path = self.blob()
        repo = self.repo()
        when = int(time.time()) + 4   # 3-4 s from now, at whole-second resolution
        self.proxy.add_fault("status", method="PATCH", nth=2, status=503,
                             headers={"Retry-After": http_date(when)})
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(REG, repo, data)
        self.assertRetryRuns(s.retries(), [[1]], MAX, error_has="503", summary=why)
        wait = seconds(s.retries()[0].next_retry_in)
        self.assertGreaterEqual(wait, 2.0, why)
        self.assertLessEqual(wait, 4.5, why)
        self.assertWaited(ups, 503, wait - 0.2, why)
        self.assertGreaterEqual(time.time(), when - 1)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, why)

    def assertWaited(self, ups, status, at_least, why):
        i = next(i for i, e in enumerate(ups) if e.status == status)
        gap = ups[i + 1].started - ups[i].finished
        # The proxy stamps `finished` after its last write, a moment after regd
        # has read the answer and started its wait: allow it 50 ms.
        self.assertGreaterEqual(gap, at_least - 0.05,
                                "regd came back after %.2fs\n%s" % (gap, why))

    def test_403_fails_at_once(self):
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("status", method="PATCH", nth=2, times=None, status=403)
        start = time.monotonic()
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertEqual(s.code, grpc.StatusCode.PERMISSION_DENIED, why)
        self.assertIn("403", s.details, why)
        self.assertEqual(s.retries(), [], "a 403 is not retried\n" + why)
        self.assertNotIn("result", s.kinds(), why)
        self.assertLess(time.monotonic() - start, 5, why)
        self.assertEqual(len([e for e in ups if e.method == "PATCH"]), 2, why)
        self.assertEqual(ups[-1].method, "DELETE", "the session is abandoned\n" + why)
        self.assertEqual(ups[-1].status, 204, why)
        self.assertEqual(upload_sessions(REG, repo), {}, why)
        self.assertEqual(head_blob(REG.url, repo, sha256(data)), 404)

    def test_attempts_exhausted(self):
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("status", method="PATCH", nth=2, times=None, status=503)
        s = self.write(repo, path, retry(max_attempts=3))
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertEqual(s.code, grpc.StatusCode.UNAVAILABLE, why)
        self.assertIn("503", s.details, "the last error\n" + why)
        self.assertIn("3 attempts", s.details, why)
        self.assertRetryRuns(s.retries(), [[1, 2]], 3, error_has="503", summary=why)
        self.assertNotIn("result", s.kinds(), why)
        self.assertEqual(len([e for e in ups if e.method == "PATCH"]), 4, why)
        self.assertEqual(ups[-1].method, "DELETE", "the session is abandoned\n" + why)
        self.assertEqual(ups[-1].status, 204, why)
        self.assertEqual(upload_sessions(REG, repo), {}, why)
        self.assertEqual(head_blob(REG.url, repo, sha256(data)), 404)

    def test_416_resumes_at_once(self):
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("status", method="PATCH", nth=3, status=416,
                             headers={"Range": "0-0"})
        s = self.write(repo, path, retry(initial_delay=1.0))
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(REG, repo, data)
        self.assertRetryRuns(s.retries(), [[1]], MAX, error_has="416", summary=why)
        self.assertEqual(seconds(s.retries()[0].next_retry_in), 0, "416 means: ask, at once")
        self.assertNoBlindReplay(ups, why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, why)
        i = next(i for i, e in enumerate(ups) if e.status == 416)
        self.assertEqual((ups[i + 1].method, ups[i + 1].status), ("GET", 204), why)
        # It resumes where the registry says it stands, which is where the refused
        # chunk began. (The registry confirmed that offset, so it was the chunk's
        # size it refused, as GHCR does past 4 MiB: the chunks after it are halved.)
        start = lambda e: int(e.header("Content-Range").split("-")[0])  # noqa: E731
        self.assertEqual(start(ups[i + 2]), start(ups[i]), why)
        patches = [e for e in ups[i + 2:] if e.method == "PATCH"]
        self.assertTrue(all(e.body_fwd <= CHUNK // 2 for e in patches), why)

    def test_push_image_through_faults(self):
        big = images.Blob(random_bytes(3 * CHUNK + 100, "push-big"), images.OCI_LAYER_GZIP)
        small = images.Blob(random_bytes(50000, "push-small"), images.OCI_LAYER_GZIP)
        config = images.make_config({"org.example.faults": "push"})
        big_path = write_file(BLOBS, "push-big", big.data)
        repo = self.repo()
        # Blobs go one at a time in order: config (inline), big (4 PATCHes), small.
        self.proxy.add_fault("status", method="PATCH", nth=2, times=2, status=502)
        self.proxy.add_fault("status", method="POST", path=r"/blobs/uploads/", nth=3, status=503)
        self.proxy.add_fault("status", method="PUT", path=r"/manifests/", nth=1, status=503)
        spec = pb.ImageSpec(config=pb.BlobSource(data=config.data),
                            layers=[pb.BlobSource(path=big_path), pb.BlobSource(data=small.data)])
        s = Stream(D.stub.PushImage(pb.PushImageRequest(
            ref="%s/%s:v1" % (PROXY.host, repo), image=spec, retry=retry(), concurrency=1),
            timeout=T))
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        blobs = {b.digest: b.size for b in (config, big, small)}
        result, _ = self.assertPushStream(s, blobs, "UPLOADED")
        self.assertRetryRuns(s.retries(big.digest), [[1, 2]], MAX, error_has="502", summary=why)
        self.assertRetryRuns(s.retries(small.digest), [[1]], MAX, error_has="503", summary=why)
        self.assertEqual(s.retries(config.digest), [], why)
        # The manifest PUT's 503 is retried too, and says so under the manifest's digest.
        self.assertRetryRuns(s.retries(result.descriptor.digest), [[1]], MAX, error_has="503",
                             summary=why)
        self.assertEqual(len(s.retries()), 4, why)
        raw = images.skopeo_inspect_raw("%s/%s:v1" % (REG.host, repo))
        self.assertEqual(sha256(raw), result.descriptor.digest)
        self.assertEqual(self.proxy.upload_bytes(), sum(blobs.values()), why)
        puts = self.proxy.log(method="PUT", kind="manifest")
        self.assertEqual([e.status for e in puts], [503, 201])


    def test_push_image_stops_at_a_403(self):
        # Two big layers go up at once; one gets a 403: the push fails with that
        # status naming the blob, the other upload stops and every open session
        # is abandoned (DELETE); no manifest is written.
        a = images.Blob(random_bytes(3 * CHUNK, "403-a"), images.OCI_LAYER_GZIP)
        b = images.Blob(random_bytes(3 * CHUNK, "403-b"), images.OCI_LAYER_GZIP)
        config = images.make_config({"org.example.faults": "403"})
        repo = self.repo()
        # (The first fault added that fires wins: the 403 goes before the throttle.)
        self.proxy.add_fault("status", method="PATCH", nth=3, status=403)
        self.proxy.add_fault("throttle", method="PATCH", times=None, rate=8 * MiB)
        spec = pb.ImageSpec(config=pb.BlobSource(data=config.data),
                            layers=[pb.BlobSource(path=write_file(BLOBS, "403-a", a.data)),
                                    pb.BlobSource(path=write_file(BLOBS, "403-b", b.data))])
        start = time.monotonic()
        s = Stream(D.stub.PushImage(pb.PushImageRequest(
            ref="%s/%s:v1" % (PROXY.host, repo), image=spec, retry=retry(), concurrency=3),
            timeout=T))
        took = time.monotonic() - start
        self.proxy.wait_idle(settle=0.5)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertEqual(s.code, grpc.StatusCode.PERMISSION_DENIED, why)
        self.assertRegex(s.details, r"blob sha256:[0-9a-f]{64}: .*403", why)
        self.assertEqual(s.retries(), [], why)
        self.assertNotIn("result", s.kinds(), why)
        self.assertLess(took, 5, "the other upload did not stop\n" + why)
        self.assertEqual(self.proxy.log(method="PUT", kind="manifest"), [], why)
        committed = {e.session for e in ups if e.method == "PUT" and e.status == 201}
        opened = {e.session for e in ups if e.session}
        deleted = {e.session for e in ups if e.method == "DELETE"}
        self.assertEqual(opened - committed, deleted, "open sessions left behind\n" + why)
        self.assertEqual(len(deleted), 2, why)
        for blob in (a, b):
            self.assertEqual(head_blob(REG.url, repo, blob.digest), 404)

# -- slow answers -----------------------------------------------------------------------------------

class DelayTest(FaultCase):
    proxy = property(lambda self: PROXY)

    def test_delay_shorter_than_stall_timeout(self):
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("delay", method="PATCH", nth=2, seconds=STALL / 2.0)
        self.proxy.add_fault("delay", method="PUT", path=r"/blobs/uploads/", nth=1,
                             seconds=STALL / 2.0)
        start = time.monotonic()
        s = self.write(repo, path)
        took = time.monotonic() - start
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(REG, repo, data)
        self.assertEqual(s.retries(), [], "a slow answer within the stall timeout is fine\n" + why)
        self.assertGreaterEqual(took, STALL, "the delays did not happen\n" + why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, why)
        self.assertEqual([e.method for e in ups], ["POST"] + ["PATCH"] * 6 + ["PUT"], why)

    def test_commit_answer_later_than_stall_timeout_is_waited_for(self):
        # Finalising may take long with no byte moving (a storage-side move, a
        # virus scan): the final PUT is not held to the stall timeout, so a
        # late answer is waited for, not retried.
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("delay", method="PUT", path=r"/blobs/uploads/", nth=1,
                             seconds=STALL + 3)
        start = time.monotonic()
        s = self.write(repo, path)
        took = time.monotonic() - start
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(REG, repo, data)
        self.assertGreaterEqual(took, STALL + 3, "the delay did not happen\n" + why)
        self.assertEqual(s.retries(), [], why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, "nothing is sent again\n" + why)
        self.assertEqual(len([e for e in ups if e.method == "PUT"]), 1, why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 1, why)


# -- token auth ----------------------------------------------------------------------------------------

class TokenTest(FaultCase):
    proxy = property(lambda self: TPROXY)

    def tearDown(self):
        ISSUER.jwt_lifetime = None
        super().tearDown()

    def token(self, repo):
        return ISSUER.make_token(TOKEN_USER[0], ["repository:%s:pull" % repo])

    def test_token_expires_during_long_upload(self):
        data, path = self.blob()
        repo = self.repo()
        ISSUER.jwt_lifetime = 2        # the registry refuses it 2 s after issue
        ISSUER.reset()
        self.proxy.add_fault("throttle", method="PATCH", times=None, rate=4 * MiB)  # ~6 s
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        ISSUER.jwt_lifetime = None
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(TREG, repo, data, self.token(repo))
        refused = [e for e in ups if e.status == 401]
        self.assertGreaterEqual(len(refused), 1, "no token expired mid-way; the test proves "
                                "nothing\n" + why)
        self.assertIn("PATCH", [e.method for e in refused], why)
        self.assertGreaterEqual(ISSUER.count_for_repo(repo), 1 + len(refused), why)
        self.assertEqual(s.retries(), [], "a refused token is replaced, not retried\n" + why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 1, why)
        # Refused PATCHes are sent again whole; the registry read little of them.
        self.assertEqual(len([e for e in ups if e.method == "PATCH" and e.status == 202]),
                         SIZE // CHUNK, why)
        self.assertLessEqual(self.proxy.upload_bytes(), SIZE + len(refused) * CHUNK, why)

    def test_injected_401_on_a_chunk(self):
        data, path = self.blob()
        repo = self.repo()
        ISSUER.reset()
        self.proxy.add_fault("unauthorized", method="PATCH", nth=3)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertIsNotNone(self.proxy.challenge(), "never saw the registry's challenge")
        self.assertLayerStream(s, SIZE, "UPLOADED")
        self.assertLanded(TREG, repo, data, self.token(repo))
        self.assertEqual(s.retries(), [], why)
        self.assertEqual(ISSUER.count_for_repo(repo), 2, "one token, then one after the 401\n"
                         + why)
        patches = [e for e in ups if e.method == "PATCH"]
        self.assertEqual([e.status for e in patches], [202, 202, 401] + [202] * 4, why)
        self.assertEqual(patches[2].header("Content-Range"), patches[3].header("Content-Range"))
        self.assertNotEqual(patches[2].header("Authorization"), patches[3].header("Authorization"),
                            "the chunk was sent again with the refused token")
        self.assertEqual(self.proxy.upload_bytes(), SIZE, why)


    def test_401_that_persists_fails_unauthenticated(self):
        data, path = self.blob()
        repo = self.repo()
        ISSUER.reset()
        self.proxy.add_fault("unauthorized", method="PATCH", nth=2, times=None)
        start = time.monotonic()
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertEqual(s.code, grpc.StatusCode.UNAUTHENTICATED, why)
        self.assertLess(time.monotonic() - start, 10, why)
        self.assertEqual(s.retries(), [], why)
        self.assertLessEqual(ISSUER.count_for_repo(repo), 3, "token requests: %s\n%s"
                             % (ISSUER.requests(), why))
        self.assertLessEqual(len([e for e in ups if e.status == 401 and e.method == "PATCH"]), 2,
                             why)
        self.assertEqual(ups[-1].method, "DELETE", why)

    def test_abandoned_session_is_deleted(self):
        # distribution authorises any DELETE, an upload session's included, with the
        # "delete" action; a token for pull,push is refused (401).
        data, path = self.blob()
        repo = self.repo()
        ISSUER.reset()
        self.proxy.add_fault("status", method="PATCH", nth=2, status=403)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertEqual(s.code, grpc.StatusCode.PERMISSION_DENIED, why)
        deletes = [e for e in ups if e.method == "DELETE"]
        self.assertTrue(deletes, "no DELETE of the session\n" + why)
        self.assertEqual(deletes[-1].status, 204, "scopes asked: %s\n%s" % (
            [r["scopes"] for r in ISSUER.requests()], why))
        self.assertEqual(upload_sessions(TREG, repo), {}, why)


# -- connection reuse -----------------------------------------------------------------------------

class ReuseTest(FaultCase):
    proxy = property(lambda self: PROXY)

    def test_connections_are_reused_across_calls(self):
        data, path = self.blob(64 * 1024)
        repo = self.repo()
        self.assertLayerStream(self.write(repo, path), len(data), "UPLOADED")
        before = PROXY.connections()
        ref = "%s/%s@%s" % (PROXY.host, repo, "sha256:" + "0" * 64)
        for _ in range(50):
            self.assertFalse(D.stub.Exists(pb.ExistsRequest(image_ref=ref), timeout=T).exists)
        for _ in range(20):
            self.assertLayerStream(self.write(repo, path), len(data), "EXISTED")
        # 70 calls, sequential: the pooled connections carry them all.
        self.assertLessEqual(PROXY.connections() - before, 2,
                             "new connections for 70 calls: %d" % (PROXY.connections() - before))


# -- redirects to storage --------------------------------------------------------------------------

class _StorageHandler(http.server.BaseHTTPRequestHandler):
    """A stand-in for the object store a registry redirects blob reads to."""
    blobs = {}     # path -> bytes
    seen = []      # (method, path, Authorization header or None)

    def do_GET(self):
        _StorageHandler.seen.append(("GET", self.path, self.headers.get("Authorization")))
        data = _StorageHandler.blobs.get(self.path.split("?")[0])
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


class RedirectTest(FaultCase):
    proxy = property(lambda self: TPROXY)

    def test_read_blob_follows_redirect_without_our_authorization(self):
        data, path = self.blob(3 * MiB + 7)
        repo = self.repo()
        self.assertLayerStream(self.write(repo, path), len(data), "UPLOADED")
        storage = STORAGE
        _StorageHandler.blobs = {"/bucket/blob": data}
        _StorageHandler.seen = []
        location = "http://127.0.0.1:%d/bucket/blob?X-Signature=abc" % storage.server_port
        self.proxy.add_fault("status", method="GET", path=r"/blobs/sha256:", times=None,
                             status=307, headers={"Location": location})
        digest = sha256(data)
        got = b"".join(c.data for c in D.stub.ReadBlob(pb.ReadBlobRequest(
            repo="%s/%s" % (self.proxy.host, repo), digest=digest), timeout=T))
        self.assertEqual(got, data)
        tail = b"".join(c.data for c in D.stub.ReadBlob(pb.ReadBlobRequest(
            repo="%s/%s" % (self.proxy.host, repo), digest=digest, offset=MiB), timeout=T))
        self.assertEqual(tail, data[MiB:])
        self.assertEqual(len(_StorageHandler.seen), 2, _StorageHandler.seen)
        # The registry got our bearer token; the storage host never does.
        registry_gets = [e for e in self.proxy.log(method="GET") if "/blobs/sha256:" in e.path]
        self.assertTrue(registry_gets and all(
            (e.header("Authorization") or "").startswith("Bearer ") for e in registry_gets))
        self.assertEqual([a for _, _, a in _StorageHandler.seen], [None, None])


if __name__ == "__main__":
    testing.main("test_faults")
