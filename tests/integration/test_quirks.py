#!/usr/bin/python3
"""Integration tests for regd against registries that behave unlike distribution 2.8.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_quirks.py [-k name]

Each registry quirk is a mode of fixtures/fault_proxy.py (see its module doc),
put in front of a real docker-registry 2.8: one proxy per mode, so that regd
sees every imitated registry as a host of its own (its own ping, challenge,
tokens and pooled connections). The modes and what regd must do there:

  ggcr            go-containerregistry's registry: no upload-status endpoint
                  (GET/DELETE of a session answer 400), only closed ranges, PATCH
                  204, a relative Location that never changes, ?mount= ignored,
                  blobs global across repositories. A failed chunk starts a
                  fresh session; offset reads work; a cleanup DELETE's 400 does
                  not change the call's outcome.
  closed_ranges   ReadBlob at an offset works when `bytes=N-` gets 416.
  patch201/204    chunked uploads (and a resume) work when PATCH answers 201/204.
  ecr             PATCH 201, 5 MiB minimum part, Range stuck after the first
                  chunk: a resume goes on from the acknowledged bytes, and a
                  daemon configured with 4 MiB chunks still succeeds.
  ghcr            416 "request body is too large" on Content-Range chunks over
                  4 MiB: regd shrinks its chunks and finishes.
  cloudflare      OCI-Chunk-Max-Length (5 MiB here), equal parts, rotating
                  _stateHash: every request uses the newest Location, no request
                  goes over the advertised maximum (a single PUT neither).
  quay            a mount needs from=: regd's mounts carry it.
  harbor          a mount answers 401: regd uploads instead.
  gcr             401s without WWW-Authenticate: regd re-uses the ping's challenge.
  no_digest_header  HEADs without Docker-Content-Digest: GetDescriptor hashes the
                  manifest; blobs the registry holds are still EXISTED.
  slow_final_put  the commit's answer comes 12 s late (--stall_timeout=5s): waited
                  for, not retried.
  dist3_partial   the registry keeps a cut PATCH body: regd resumes where the
                  status GET says, re-sending at most one chunk.

The daemon runs with --chunk_size=6MiB (blobs up to 6 MiB go in one PUT) and
--stall_timeout=5s; a second one with --chunk_size=4MiB serves the ECR
minimum-part test. Results are checked on the registry itself (HEAD, skopeo),
and the proxy's log and counters show what regd sent.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import images, stubs, testing  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.fault_proxy import FaultProxy  # noqa: E402
from fixtures.registry import Registry  # noqa: E402
from fixtures.token_issuer import TokenIssuer  # noqa: E402
from fixtures.uploads import (Stream, StreamChecks, call_async, head_blob,  # noqa: E402
                              random_bytes, retry_config, sha256, write_file)

S = stubs.load()
pb = S.registry_pb2
T = 90
MiB = 1 << 20
CHUNK = 6 * MiB
SIZE = 20 * MiB            # 6 + 6 + 6 + 2 MiB
MAX = 6
STALL = 5                  # --stall_timeout, seconds
SLOW_PUT = 12              # seconds the slow_final_put mode holds the commit's answer
CF_MAX = 5 * MiB           # OCI-Chunk-Max-Length of the cloudflare mode
TOKEN_USER = ("bob", "builder")
REGISTRY_LEEWAY = 60       # distribution accepts a token this long past its exp

PLAIN_MODES = ("ggcr", "closed_ranges", "patch201", "patch204", "ecr", "ghcr", "cloudflare",
               "quay", "no_digest_header", "slow_final_put", "dist3_partial")
TOKEN_MODES = ("gcr", "harbor")
MODE_PARAMS = {"cloudflare": {"chunk_max": CF_MAX},
               "slow_final_put": {"slow_put_seconds": SLOW_PUT}}

ENV = None
REG = None
TREG = None
ISSUER = None
P = {}          # mode -> FaultProxy ("plain": no mode)
D = None        # --chunk_size=6MiB
D4 = None       # --chunk_size=4MiB
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
    global ENV, REG, TREG, ISSUER, D, D4, BLOBS
    ENV = testing.Env(prefix="regd-quirks-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    BLOBS = os.path.join(ENV.workdir, "blobs")
    os.makedirs(BLOBS)
    REG = ENV.enter(Registry(ENV.workdir, auth="none"), "registry-plain")
    ISSUER = ENV.enter(ShortLivedIssuer(os.path.join(ENV.workdir, "issuer"),
                                        users=dict([TOKEN_USER]), expires_in=300))
    TREG = ENV.enter(Registry(ENV.workdir, auth="token", token_issuer=ISSUER), "registry-token")
    P["plain"] = ENV.enter(FaultProxy(REG.host))
    for mode in PLAIN_MODES:
        P[mode] = ENV.enter(FaultProxy(REG.host, modes=[mode], **MODE_PARAMS.get(mode, {})))
    for mode in TOKEN_MODES:
        P[mode] = ENV.enter(FaultProxy(TREG.host, modes=[mode]))
    hosts = [p.host for p in P.values()] + [REG.host, TREG.host]
    auths = {P[m].host: TOKEN_USER for m in TOKEN_MODES}
    auths[TREG.host] = TOKEN_USER
    D = ENV.enter(Daemon(ENV.workdir, insecure_registries=hosts, allowed_paths=[BLOBS],
                         auths=auths, rpc_timeout=T,
                         extra_args=["--chunk_size=%d" % CHUNK, "--stall_timeout=%ds" % STALL]),
                  "regd")
    D4 = ENV.enter(Daemon(ENV.workdir, insecure_registries=hosts, allowed_paths=[BLOBS],
                          rpc_timeout=T,
                          extra_args=["--chunk_size=%d" % (4 * MiB),
                                      "--stall_timeout=%ds" % STALL]),
                   "regd-4MiB")


def retry(max_attempts=MAX, initial_delay=0.05):
    return retry_config(pb, max_attempts=max_attempts, initial_delay=initial_delay)


def _start(e):
    """First byte of a PATCH per its Content-Range."""
    return int(e.header("Content-Range").split("-")[0])


class QuirkCase(testing.IntegrationCase, StreamChecks):
    mode = None  # the proxy of the class

    @property
    def proxy(self):
        return P[self.mode]

    def setUp(self):
        for p in P.values():
            p.clear_faults()
            p.reset_counters()

    def tearDown(self):
        for p in P.values():
            p.clear_faults()
        for d in (D, D4):
            self.assertTrue(d.alive(), "regd died:\n" + d.log())

    # -- helpers ------------------------------------------------------------------------
    def blob(self, size=SIZE):
        _n[0] += 1
        data = random_bytes(size, "%s-%d" % (self.id(), _n[0]))
        return data, write_file(BLOBS, "blob-%d" % _n[0], data)

    def repo(self, tag=""):
        _n[0] += 1
        name = self._testMethodName.replace("test_", "")[:36].replace("_", "-")
        return "quirks/%s/%s%s-%d" % (self.mode.replace("_", "-"), name, tag, _n[0])

    def write(self, repo, source, daemon=None, proxy=None, retry_cfg=None):
        proxy = proxy or self.proxy
        daemon = daemon or D
        if isinstance(source, str):
            source = pb.BlobSource(path=source)
        return Stream(daemon.stub.WriteLayer(pb.WriteLayerRequest(
            repo="%s/%s" % (proxy.host, repo), layer=source, retry=retry_cfg or retry()),
            timeout=T))

    def read(self, repo, digest, offset=0, proxy=None):
        proxy = proxy or self.proxy
        return b"".join(c.data for c in D.stub.ReadBlob(pb.ReadBlobRequest(
            repo="%s/%s" % (proxy.host, repo), digest=digest, offset=offset), timeout=T))

    def uploads(self, repo, proxy=None):
        proxy = proxy or self.proxy
        proxy.wait_idle()
        return [e for e in proxy.log(kind="upload") if e.path.startswith("/v2/%s/" % repo)]

    def upload_and_land(self):
        """WriteLayer of a fresh blob that must end UPLOADED and land intact:
        (data, repo, stream, upload log, explanation for failures)."""
        data, path = self.blob()
        repo = self.repo()
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerOk(s, SIZE, "UPLOADED", why)
        self.assertLanded(repo, data)
        return data, repo, s, ups, why

    def explain(self, s, ups, proxy=None):
        proxy = proxy or self.proxy
        lines = []
        for e in ups:
            lines.append("%s %s -> %s in=%d fwd=%d %s%s%s" % (
                e.method, e.path if len(e.path) < 100 else e.path[:97] + "...", e.status,
                e.body_in, e.body_fwd, e.header("Content-Range") or "",
                " fault=" + e.fault if e.fault else "", " quirk=" + e.quirk if e.quirk else ""))
        return "%s\nquirk hits: %s\nrequests:\n  %s" % (
            s.summary() if s is not None else "", proxy.quirk_hits(), "\n  ".join(lines))

    def assertLayerOk(self, s, size, outcome, why):
        """assertLayerStream, with the proxy's view of the requests when the call failed."""
        self.assertIsNone(s.error, "WriteLayer failed: %s %s\n%s" % (s.code.name, s.details, why))
        return self.assertLayerStream(s, size, outcome)

    def assertLanded(self, repo, data, reg=None, token=None):
        self.assertEqual(head_blob((reg or REG).url, repo, sha256(data), token), 200,
                         "blob not in the registry")

    def assertNoBlindReplay(self, ups, why):
        """After a PATCH or PUT whose outcome regd could not know, the next request on
        the upload asks first (GET), opens a new session (POST) or checks (HEAD)."""
        for i, e in enumerate(ups[:-1]):
            if e.method not in ("PATCH", "PUT") or e.status in (201, 202, 204, 400, 401, 416):
                continue
            nxt = ups[i + 1]
            if (e.status is None and e.body_in == 0 and nxt.method == e.method
                    and nxt.path == e.path):
                continue  # nothing of it left regd: libcurl's own resend
            self.assertIn(nxt.method, ("GET", "POST", "HEAD", "DELETE"),
                          "request %d (%s -> %s) was followed by a blind %s\n%s"
                          % (i, e.method, e.status, nxt.method, why))

    def committed_session_patches(self, ups):
        """The accepted PATCHes of the session whose PUT was answered 201, in order."""
        done = [e.session for e in ups if e.method == "PUT" and e.status == 201]
        if not done:
            return []
        return [e for e in ups if e.session == done[-1] and e.method == "PATCH"
                and e.status in (201, 202, 204)]


# -- go-containerregistry -------------------------------------------------------------------------

class GgcrTest(QuirkCase):
    mode = "ggcr"

    def test_chunked_upload(self):
        data, repo, s, ups, why = self.upload_and_land()
        self.assertEqual(s.retries(), [], why)
        patches = [e for e in ups if e.method == "PATCH"]
        self.assertEqual([e.status for e in patches], [204] * 4, why)
        # The Location is relative and the same all along: so are regd's requests.
        self.assertEqual(len({e.path for e in patches}), 1, why)
        self.assertNotIn("?", patches[0].path, why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, why)

    def test_failed_chunk_starts_a_fresh_session(self):
        # No status endpoint: after a 503 on a chunk, GET <upload> answers 400. That
        # is "cannot tell", not the caller's error: regd starts a new session.
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("status", method="PATCH", nth=2, status=503)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerOk(s, SIZE, "UPLOADED", why)
        self.assertLanded(repo, data)
        self.assertNoBlindReplay(ups, why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 2,
                         "one fresh session after the failure\n" + why)
        self.assertLessEqual(len([e for e in ups if e.method == "GET"]), 1, why)
        self.assertEqual(sum(e.body_fwd for e in self.committed_session_patches(ups)), SIZE, why)
        self.assertLessEqual(self.proxy.upload_bytes(), SIZE + CHUNK, why)

    def test_reset_mid_body_starts_a_fresh_session(self):
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("reset_mid_body", method="PATCH", nth=2, after_bytes=1 * MiB)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerOk(s, SIZE, "UPLOADED", why)
        self.assertLanded(repo, data)
        self.assertNoBlindReplay(ups, why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 2, why)
        self.assertEqual(sum(e.body_fwd for e in self.committed_session_patches(ups)), SIZE, why)
        self.assertLessEqual(self.proxy.upload_bytes(), SIZE + CHUNK + MiB, why)

    def test_offset_read(self):
        data, path = self.blob(3 * MiB + 11)
        repo = self.repo()
        self.assertLayerStream(self.write(repo, path, proxy=P["plain"]), len(data), "UPLOADED")
        digest = sha256(data)
        self.assertEqual(self.read(repo, digest), data)
        for off in (1, MiB + 5, len(data) - 1):
            try:
                got = self.read(repo, digest, off)
            except grpc.RpcError as e:
                self.fail("ReadBlob at offset %d: %s %s\nrequests: %s\nquirk hits: %s" % (
                    off, e.code().name, e.details(), self.proxy.log(kind="blob"),
                    self.proxy.quirk_hits()))
            self.assertEqual(got, data[off:], "offset %d" % off)

    def test_blobs_are_global(self):
        data, path = self.blob(2 * MiB)
        a, b = self.repo("a"), self.repo("b")
        self.assertLayerStream(self.write(a, path), len(data), "UPLOADED")
        self.proxy.reset_counters()
        s = self.write(b, path)
        why = self.explain(s, self.uploads(b))
        self.assertLayerOk(s, len(data), "EXISTED", why)
        self.assertEqual(self.proxy.upload_bytes(), 0, why)
        # An image in a third repository whose layer lives in `a` only.
        config = images.make_config({"org.example.quirk": "ggcr"})
        c = self.repo("c")
        spec = pb.ImageSpec(config=pb.BlobSource(data=config.data),
                            layers=[pb.BlobSource(path=path)])
        s = Stream(D.stub.PushImage(pb.PushImageRequest(
            ref="%s/%s:v1" % (self.proxy.host, c), image=spec, retry=retry()), timeout=T))
        why = self.explain(s, self.uploads(c))
        result, _ = self.assertPushStream(s, {config.digest: config.size, sha256(data): len(data)},
                                          {config.digest: "UPLOADED", sha256(data): "EXISTED"})
        raw = images.skopeo_inspect_raw("%s/%s:v1" % (REG.host, c))
        self.assertEqual(sha256(raw), result.descriptor.digest, why)

    def test_mount_is_ignored(self):
        # The source repository lacks the blob (so the HEAD says absent): the
        # mount request opens a plain session (202), which regd uses.
        data, path = self.blob(1 * MiB)
        src, dst = self.repo("src"), self.repo("dst")
        s = self.write(dst, pb.BlobSource(path=path, mount_from="%s/%s" % (self.proxy.host, src)))
        ups = self.uploads(dst)
        why = self.explain(s, ups)
        self.assertLayerOk(s, len(data), "UPLOADED", why)
        self.assertLanded(dst, data)
        self.assertEqual(ups[0].method, "POST", why)
        self.assertIn("mount=", ups[0].path, why)
        self.assertEqual(ups[0].status, 202, why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 1,
                         "the 202 session is the one to use\n" + why)
        self.assertEqual(self.proxy.upload_bytes(), len(data), why)

    def test_failed_upload_cleanup_delete_gets_400(self):
        # The session cannot be deleted (400): the call still fails with the cause.
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("status", method="PATCH", nth=2, times=None, status=403)
        start = time.monotonic()
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertEqual(s.code, grpc.StatusCode.PERMISSION_DENIED, why)
        self.assertIn("403", s.details, why)
        self.assertNotIn("METHOD_UNKNOWN", s.details, why)
        self.assertLess(time.monotonic() - start, 10, why)
        deletes = [e for e in ups if e.method == "DELETE"]
        self.assertLessEqual(len(deletes), 1, "the DELETE is not retried\n" + why)
        self.assertEqual(ups[-1].method, "DELETE" if deletes else "PATCH", why)


class ClosedRangesTest(QuirkCase):
    mode = "closed_ranges"

    def test_read_blob_at_offsets(self):
        data, path = self.blob(5 * MiB + 3)
        repo = self.repo()
        self.assertLayerStream(self.write(repo, path), len(data), "UPLOADED")
        digest = sha256(data)
        self.assertEqual(self.read(repo, digest), data)
        for off in (1, 4 * MiB + 1, len(data) - 1):
            try:
                got = self.read(repo, digest, off)
            except grpc.RpcError as e:
                self.fail("ReadBlob at offset %d: %s %s\nrequests: %s" % (
                    off, e.code().name, e.details(), self.proxy.log(kind="blob")))
            self.assertEqual(len(got), len(data) - off, "offset %d" % off)
            self.assertEqual(got, data[off:], "offset %d" % off)
        # An open range may be tried first, but a 416 to it is not asked again and again.
        gets = self.proxy.log(kind="blob", method="GET")
        self.assertLessEqual(len([e for e in gets if e.status == 416]), 3, gets)
        self.assertEqual(len([e for e in gets if e.status in (200, 206)]), 4, gets)


# -- PATCH success codes --------------------------------------------------------------------------

class PatchCodesMixin:
    code = None

    def test_chunked_upload_with_a_resume(self):
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("status", method="PATCH", nth=3, status=503)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerOk(s, SIZE, "UPLOADED", why)
        self.assertLanded(repo, data)
        self.assertRetryRuns(s.retries(), [[1]], MAX, error_has="503", summary=why)
        self.assertNoBlindReplay(ups, why)
        self.assertEqual([e.status for e in ups if e.method == "PATCH" and e.fault is None],
                         [self.code] * 4, why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 1, why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, why)


class Patch201Test(PatchCodesMixin, QuirkCase):
    mode = "patch201"
    code = 201


class Patch204Test(PatchCodesMixin, QuirkCase):
    mode = "patch204"
    code = 204


# -- ECR ---------------------------------------------------------------------------------------------

class EcrTest(QuirkCase):
    mode = "ecr"

    def test_resume_past_a_stuck_range(self):
        # After the 503 the status GET says 0-(6MiB-1) although the registry holds
        # 12 MiB: regd goes on from the bytes that were acknowledged (201s).
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("status", method="PATCH", nth=3, status=503)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerOk(s, SIZE, "UPLOADED", why)
        self.assertLanded(repo, data)
        self.assertGreaterEqual(self.proxy.quirk_hits().get("range_stuck", 0), 1,
                                "the Range never stuck; the test proves nothing\n" + why)
        self.assertEqual([e.status for e in ups if e.method == "PATCH" and e.fault is None],
                         [201] * 4, why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 1, why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, "bytes sent twice\n" + why)

    def test_small_chunk_size_still_makes_5mib_parts(self):
        # A daemon configured with 4 MiB chunks: ECR refuses a part under 5 MiB
        # that is not the last (400). The upload must still succeed.
        data, path = self.blob()
        repo = self.repo()
        s = self.write(repo, path, daemon=D4)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerOk(s, SIZE, "UPLOADED", why)
        self.assertLanded(repo, data)
        patches = self.committed_session_patches(ups)
        self.assertTrue(patches, why)
        for e in patches[:-1]:
            self.assertGreaterEqual(e.body_fwd, 5 * MiB, why)
        self.assertLessEqual(self.proxy.upload_bytes(), 2 * SIZE, why)


# -- GHCR --------------------------------------------------------------------------------------------

class GhcrTest(QuirkCase):
    mode = "ghcr"

    def test_chunks_over_4mib_are_refused_then_shrunk(self):
        data, repo, s, ups, why = self.upload_and_land()
        refused = [e for e in ups if e.status == 416]
        self.assertGreaterEqual(len(refused), 1, "no 416; the test proves nothing\n" + why)
        self.assertLessEqual(len(refused), 2, "regd kept sending big chunks\n" + why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 1, why)
        for e in ups:
            if e.method == "PATCH" and e.status in (201, 202, 204):
                self.assertLessEqual(e.body_fwd, 4 * MiB, why)
        self.assertEqual(self.proxy.upload_bytes(), SIZE, why)


# -- Cloudflare serverless-registry ------------------------------------------------------------------

class CloudflareTest(QuirkCase):
    mode = "cloudflare"

    def check_parts(self, ups, size, why):
        patches = self.committed_session_patches(ups)
        sizes = [e.body_fwd for e in patches]
        self.assertTrue(sizes, why)
        self.assertTrue(all(n <= CF_MAX for n in sizes), "over OCI-Chunk-Max-Length\n" + why)
        self.assertEqual(len(set(sizes[:-1])), min(1, len(sizes) - 1),
                         "parts differ before the last\n" + why)
        self.assertLessEqual(sizes[-1], sizes[0], why)
        self.assertEqual(sum(sizes), size, why)
        for e in ups:
            if e.session and e.method != "POST":
                self.assertIn("_stateHash=", e.path, "the newest Location was not used\n" + why)

    def test_chunks_follow_max_length_and_state_hash(self):
        size = 22 * MiB
        data, path = self.blob(size)
        repo = self.repo()
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerOk(s, size, "UPLOADED", why)
        self.assertLanded(repo, data)
        self.assertEqual(self.proxy.quirk_hits(), {}, "requests refused\n" + why)
        self.check_parts(ups, size, why)
        self.assertEqual(self.proxy.upload_bytes(), size, why)

    def test_resume_uses_the_newest_state_hash(self):
        size = 22 * MiB
        data, path = self.blob(size)
        repo = self.repo()
        self.proxy.add_fault("status", method="PATCH", nth=2, status=503)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerOk(s, size, "UPLOADED", why)
        self.assertLanded(repo, data)
        self.assertEqual(self.proxy.quirk_hits(), {}, "requests refused\n" + why)
        self.assertIn("GET", [e.method for e in ups], why)
        self.check_parts(ups, size, why)
        self.assertEqual(self.proxy.upload_bytes(), size, why)

    def test_single_put_stays_under_max_length(self):
        # 5.5 MiB is under regd's 6 MiB chunk (so it would go in one PUT) but over
        # the 5 MiB the session advertised.
        size = 5 * MiB + MiB // 2
        data, path = self.blob(size)
        repo = self.repo()
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerOk(s, size, "UPLOADED", why)
        self.assertLanded(repo, data)
        self.assertEqual(self.proxy.quirk_hits(), {}, "requests refused\n" + why)
        self.assertTrue(all(e.body_fwd <= CF_MAX for e in ups), why)


# -- mounts: Quay and Harbor -----------------------------------------------------------------------

class QuayTest(QuirkCase):
    mode = "quay"

    def test_mount_names_its_source(self):
        data, path = self.blob(512 * 1024)
        src, dst = self.repo("src"), self.repo("dst")
        self.assertLayerStream(self.write(src, path), len(data), "UPLOADED")
        self.proxy.reset_counters()
        s = self.write(dst, pb.BlobSource(path=path, mount_from="%s/%s" % (self.proxy.host, src)))
        ups = self.uploads(dst)
        why = self.explain(s, ups)
        self.assertLayerOk(s, len(data), "MOUNTED", why)
        self.assertLanded(dst, data)
        mounts = [e for e in ups if e.method == "POST" and "mount=" in e.path]
        self.assertEqual(len(mounts), 1, why)
        self.assertIn("from=", mounts[0].path, why)
        self.assertEqual(self.proxy.quirk_hits(), {}, why)
        self.assertEqual(self.proxy.upload_bytes(), 0, why)


class HarborTest(QuirkCase):
    mode = "harbor"

    def token(self, repo):
        return ISSUER.make_token(TOKEN_USER[0], ["repository:%s:pull" % repo])

    def test_mount_401_falls_back_to_upload(self):
        data, path = self.blob(512 * 1024)
        src, dst = self.repo("src"), self.repo("dst")
        self.assertLayerStream(self.write(src, path), len(data), "UPLOADED")
        self.proxy.reset_counters()
        s = self.write(dst, pb.BlobSource(path=path, mount_from="%s/%s" % (self.proxy.host, src)))
        ups = self.uploads(dst)
        why = self.explain(s, ups)
        self.assertLayerOk(s, len(data), "UPLOADED", why)
        self.assertLanded(dst, data, reg=TREG, token=self.token(dst))
        self.assertGreaterEqual(self.proxy.quirk_hits().get("mount_401", 0), 1, why)
        self.assertLessEqual(self.proxy.quirk_hits().get("mount_401", 0), 2, why)
        self.assertEqual(self.proxy.upload_bytes(), len(data), why)
        # Nothing is poisoned: the next upload to the same repository just works.
        data2, path2 = self.blob(300 * 1024)
        s2 = self.write(dst, path2)
        self.assertLayerStream(s2, len(data2), "UPLOADED")
        self.assertLanded(dst, data2, reg=TREG, token=self.token(dst))


# -- GCR --------------------------------------------------------------------------------------------

class GcrTest(QuirkCase):
    mode = "gcr"

    def tearDown(self):
        ISSUER.jwt_lifetime = None
        super().tearDown()

    def token(self, repo):
        return ISSUER.make_token(TOKEN_USER[0], ["repository:%s:pull" % repo])

    def test_token_expiry_mid_upload_without_challenge(self):
        data, path = self.blob()
        repo = self.repo()
        ISSUER.jwt_lifetime = 2        # the registry refuses a token 2 s after issue
        ISSUER.reset()
        self.proxy.add_fault("throttle", method="PATCH", times=None, rate=5 * MiB)  # ~4 s
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        ISSUER.jwt_lifetime = None
        self.assertLayerOk(s, SIZE, "UPLOADED", why)
        self.assertLanded(repo, data, reg=TREG, token=self.token(repo))
        refused = [e for e in ups if e.status == 401]
        self.assertGreaterEqual(len(refused), 1, "no token expired mid-way\n" + why)
        self.assertGreaterEqual(self.proxy.quirk_hits().get("bare_401", 0), 1, why)
        self.assertGreaterEqual(ISSUER.count_for_repo(repo), 1 + len(refused), why)

    def test_bare_401_on_a_read(self):
        img = images.build_image("quirk-gcr", {"org.example.quirk": "gcr"})
        repo = self.repo()
        images.push(img, ENV.workdir, TREG.host, repo, "v1", creds=TOKEN_USER)
        ref = "%s/%s:v1" % (self.proxy.host, repo)
        self.assertTrue(D.stub.Exists(pb.ExistsRequest(image_ref=ref), timeout=T).exists)
        self.proxy.add_fault("status", method="GET", path=r"/manifests/", nth=1, status=401)
        got = D.stub.GetImage(pb.GetImageRequest(image_ref=ref), timeout=T)
        self.assertEqual(got.descriptor.digest, img.digest)
        gets = self.proxy.log(method="GET", kind="manifest")
        self.assertEqual([e.status for e in gets], [401, 200], gets)
        self.assertIsNone(gets[0].header("WWW-Authenticate"))


# -- HEAD without Docker-Content-Digest ------------------------------------------------------------

class NoDigestHeaderTest(QuirkCase):
    mode = "no_digest_header"

    def test_reads_and_existing_blobs(self):
        img = images.build_image("quirk-nodigest", {"org.example.quirk": "no-digest"},
                                 layer_sizes=(70000, 1200))
        repo = self.repo()
        images.push(img, ENV.workdir, REG.host, repo, "v1")
        ref = "%s/%s:v1" % (self.proxy.host, repo)
        d = D.stub.GetDescriptor(pb.GetDescriptorRequest(image_ref=ref), timeout=T)
        self.assertEqual(d.digest, img.digest)
        self.assertEqual(d.size, len(img.manifest.data))
        self.assertEqual(d.media_type, img.manifest.media_type)
        by_digest = "%s/%s@%s" % (self.proxy.host, repo, img.digest)
        d2 = D.stub.GetDescriptor(pb.GetDescriptorRequest(image_ref=by_digest), timeout=T)
        self.assertEqual((d2.digest, d2.size), (img.digest, len(img.manifest.data)))
        self.assertTrue(D.stub.Exists(pb.ExistsRequest(image_ref=ref), timeout=T).exists)
        self.assertTrue(D.stub.Exists(pb.ExistsRequest(image_ref=by_digest), timeout=T).exists)
        self.assertGreaterEqual(self.proxy.quirk_hits().get("no_digest_header", 0), 1)
        # Every blob the registry holds is found by a HEAD without the header.
        layer = img.layers[0]
        s = self.write(repo, pb.BlobSource(data=layer.data))
        why = self.explain(s, self.uploads(repo))
        self.assertLayerOk(s, len(layer.data), "EXISTED", why)
        spec = pb.ImageSpec(config=pb.BlobSource(data=img.config.data),
                            layers=[pb.BlobSource(data=x.data) for x in img.layers])
        s = Stream(D.stub.PushImage(pb.PushImageRequest(
            ref="%s/%s:v2" % (self.proxy.host, repo), image=spec, retry=retry()), timeout=T))
        self.assertPushStream(s, {b.digest: b.size for b in [img.config] + list(img.layers)},
                              "EXISTED")
        self.assertEqual(self.proxy.upload_bytes(), 0)


# -- slow commit --------------------------------------------------------------------------------------

class SlowFinalPutTest(QuirkCase):
    mode = "slow_final_put"

    def test_commit_answer_after_long_silence_is_waited_for(self):
        # Both kinds of final PUT: after PATCHes (no body) and monolithic (with body).
        big, big_path = self.blob(14 * MiB)
        small, small_path = self.blob(1 * MiB)
        r1, r2 = self.repo("chunked"), self.repo("mono")
        start = time.monotonic()
        t1 = call_async(lambda: self.write(r1, big_path))
        t2 = call_async(lambda: self.write(r2, small_path))
        t1.join(T)
        t2.join(T)
        took = time.monotonic() - start
        self.assertIsNone(t1.exc)
        self.assertIsNone(t2.exc)
        for s, repo, data in ((t1.value, r1, big), (t2.value, r2, small)):
            ups = self.uploads(repo)
            why = self.explain(s, ups)
            self.assertLayerOk(s, len(data), "UPLOADED", why)
            self.assertLanded(repo, data)
            self.assertEqual(s.retries(), [], "a late commit answer is not a stall\n" + why)
            self.assertEqual(len([e for e in ups if e.method == "PUT"]), 1, why)
            self.assertEqual(len([e for e in ups if e.method == "POST"]), 1, why)
        self.assertGreaterEqual(took, SLOW_PUT, "the delay did not happen")
        self.assertEqual(self.proxy.quirk_hits().get("slow_final_put"), 2)
        self.assertEqual(self.proxy.upload_bytes(), len(big) + len(small))


# -- a registry that keeps a partial PATCH body ------------------------------------------------------

class Dist3PartialTest(QuirkCase):
    mode = "dist3_partial"

    def test_reset_mid_body_resumes_at_the_kept_bytes(self):
        size = 4 * CHUNK
        data, path = self.blob(size)
        repo = self.repo()
        kept = 2 * MiB
        self.proxy.add_fault("reset_mid_body", method="PATCH", nth=2, after_bytes=kept)
        s = self.write(repo, path)
        ups = self.uploads(repo)
        why = self.explain(s, ups)
        self.assertLayerOk(s, size, "UPLOADED", why)
        self.assertLanded(repo, data)
        self.assertEqual(self.proxy.quirk_hits().get("dist3_partial", 0) >= 1, True,
                         "the registry never kept a partial body\n" + why)
        self.assertRetryRuns(s.retries(), [[1]], MAX, summary=why)
        self.assertNoBlindReplay(ups, why)
        self.assertEqual(len([e for e in ups if e.method == "POST"]), 1,
                         "the session survives: no fresh one\n" + why)
        # Every byte reached the registry once; at most one chunk went out twice.
        self.assertEqual(self.proxy.bytes_forwarded(method="PATCH"), size, why)
        self.assertLessEqual(self.proxy.bytes_received(method="PATCH"), size + CHUNK, why)
        i = next(i for i, e in enumerate(ups) if e.fault == "reset_mid_body")
        after = [e for e in ups[i + 1:] if e.method == "PATCH"]
        self.assertEqual(_start(after[0]), CHUNK + kept, "resumed elsewhere\n" + why)


# -- retry messages after a reset (issue 6, item 11) -------------------------------------------------

class ResetMessageTest(QuirkCase):
    mode = "plain"

    def test_retry_event_names_the_reset(self):
        data, path = self.blob()
        repo = self.repo()
        self.proxy.add_fault("reset_mid_body", method="PATCH", nth=2, after_bytes=MiB)
        s = self.write(repo, path)
        why = self.explain(s, self.uploads(repo))
        self.assertLayerOk(s, SIZE, "UPLOADED", why)
        self.assertTrue(s.retries(), why)
        for r in s.retries():
            self.assertNotIn("rewind", r.error.lower(), why)


if __name__ == "__main__":
    testing.main("test_quirks")
