#!/usr/bin/python3
"""regd against a hostile registry (issue 6): the real daemon, a scripted fake.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_hostile.py

Every registry here is fixtures/hostile_registry.py: a threaded HTTP(S) server
on 127.0.0.1 that answers whatever the test scripts (status, raw header bytes,
body) and records every request with its headers. Addresses in 169.254.0.0/16
appear only where regd must refuse before it connects. Each test checks one
defect of issue 6:

 1. NestedJsonTest: JSON nested 100k-200k deep as a manifest, an index, a
    config, a token response and a layout's index.json: INVALID_ARGUMENT (a
    clean error for the token), and the daemon still serves.
 2. RedirectTest: blob redirects to a metadata address, to a plain-HTTP host
    not in --insecure_registries, from HTTPS down to HTTP, in a loop, and to a
    listed storage host (which must not see our Authorization header).
 3. LinkLocalTest: a registry at 169.254.169.254 is PERMISSION_DENIED at once.
 4. AllowedRegistriesTest: --allowed_registries refuses every other registry
    before a byte is sent; wildcard patterns start, a bad pattern exits 2.
 5. ChallengeTest: a broken Bearer challenge or token service, then a fixed
    one: regd recovers within 10 s without a restart; a refused token makes
    regd read the challenge again.
 6. Utf8Test: invalid UTF-8 in headers, error bodies, configs and indexes
    never reaches the client as INTERNAL or as an undecodable status.
 7. SecretsTest: credentials a registry echoes in an error body appear in
    neither the status nor the log; a 60 KB body gives a message under 1 KB.
 8. CallerInputTest: a 1 MiB repository name is INVALID_ARGUMENT with a short
    message and a short log line, and nothing is sent.
 9. PushIndexTest: entries "latest?x=1" and "latest\\0junk" and 1025 entries
    are INVALID_ARGUMENT before anything is fetched.

A review of those fixes found more; one class a finding:

10. RedirectChallengeTest: a storage host's 401 (Bearer, realm on a third
    host) after a redirect neither reaches that realm nor replaces the
    registry's own (Basic) auth.
11. CleanupBoundTest: an endless or drip-fed error body to the clean-up
    DELETE does not pin the only call slot (--max_concurrent_calls=1).
12. ProxyEnvTest: http(s)_proxy in regd's environment is ignored: metadata
    addresses are still refused, and the proxy sees no connection.
13. RealmEgressTest: a token realm is vetted like a registry: the allow list,
    and never an HTTPS registry's token over plain HTTP.
14. TokenWaiterTest: a caller waiting for another caller's token fetch
    honours its own deadline.
15. TokenSizeTest: a 1,000,000-character token is refused; hundreds of them
    leave regd's memory flat.
16. GrpcMemoryTest: 48 concurrent 15 MiB inline WriteLayers are refused
    without regd buffering them all.
"""

import json
import logging
import os
import re
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import images, paths, stubs, testing  # noqa: E402
from fixtures.daemon import Daemon, DaemonError  # noqa: E402
from fixtures.hostile_registry import (ConnectionRecorder, HostileRegistry, Reply,  # noqa: E402
                                       make_cert, serve_image)
from fixtures.uploads import Stream, retry_config, sha256  # noqa: E402

S = stubs.load()
pb = S.registry_pb2
SERVING = S.health_pb2.HealthCheckResponse.SERVING
T = 20        # seconds, deadline of a normal RPC
T_FAST = 8    # seconds, deadline of an RPC that must fail fast
SC = grpc.StatusCode
# Codes that say the daemon (or the client's decoding of its answer) broke.
BROKEN = (SC.INTERNAL, SC.UNKNOWN)
USER = ("hostile-user", "hostile-pass")

# Valid JSON, far under every size cap, far too deep for a recursive parser.
DEEP = [
    ("open-array", b"[" * 200000),
    ("array", b"[" * 200000 + b"]" * 200000),
    ("object", b'{"a":' * 100000 + b"1" + b"}" * 100000),
]

OCI_MANIFEST = images.OCI_MANIFEST
OCI_INDEX = images.OCI_INDEX

ENV = None
CERT = None
SANE = None      # a small OCI image every fake can serve under sane/app:v1


def setUpModule():
    global ENV, CERT, SANE
    ENV = testing.Env(prefix="regd-hostile-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    CERT = make_cert(ENV.workdir)
    SANE = images.build_image("hostile-sane", {"org.example.hostile": "sane"},
                              layer_sizes=(300,))


# -- helpers ---------------------------------------------------------------------

class _DecodeErrors(logging.Handler):
    """grpc's Python layer logs "Invalid encoding" when a status message is not
    UTF-8 (it then decodes it as latin-1); this catches those records."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def emit(self, record):
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record we cannot format is still a hit
            text = repr(record.msg)
        if "encoding" in text.lower():
            self.seen.append(text[:300])

    def take(self):
        out, self.seen = self.seen, []
        return out


DECODE_ERRORS = _DecodeErrors()
logging.getLogger("grpc").addHandler(DECODE_ERRORS)


def outcome(fn, *args, **kwargs):
    """(result, None) or (None, grpc.RpcError); a response stream is drained."""
    try:
        res = fn(*args, **kwargs)
        if hasattr(res, "__iter__") and not hasattr(res, "ListFields"):
            res = list(res)
        return res, None
    except grpc.RpcError as e:
        return None, e


def serve_sane(fake, repo="sane/app"):
    serve_image(fake, repo, "v1", SANE.manifest, SANE.blobs())
    return "%s/%s:v1" % (fake.host, repo)


def manifest_for(config_blob, layers=None):
    """An OCI manifest Blob over `config_blob` (and SANE's layer by default)."""
    layers = SANE.layers if layers is None else layers
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_blob.descriptor(),
           "layers": [l.descriptor() for l in layers]}
    return images.Blob(images.canonical_json(doc), OCI_MANIFEST)


def log_size(d):
    try:
        return os.path.getsize(d.stderr_path)
    except OSError:
        return 0


def log_since(d, mark):
    with open(d.stderr_path, "rb") as f:
        f.seek(mark)
        return f.read()


class HostileCase(testing.IntegrationCase):
    def setUp(self):
        self._extra = []

    def extra_logs(self):
        return list(getattr(self, "_extra", []))

    def fake(self, name="fake", tls=None):
        f = HostileRegistry(ENV.workdir, tls=tls, name=name).start()
        self.addCleanup(f.stop)
        self._extra.append((name, f.log_path))
        return f

    def daemon(self, **kwargs):
        d = Daemon(ENV.workdir, **kwargs)
        self._extra.append(("regd-%d" % d.n, d.stderr_path))
        d.start()
        self.addCleanup(d.stop, False)
        return d

    def write_config(self, registries):
        path = os.path.join(ENV.workdir, "regd-config-%s.json" % self.id().rsplit(".", 1)[-1])
        with open(path, "w") as f:
            json.dump({"registries": registries}, f)
        return path

    def assertServing(self, d, sane_ref):
        """regd is alive, healthy, and still reads from a sane registry."""
        self.assertTrue(d.alive(), "regd died (exit %s):\n%s"
                        % (d.proc.returncode, d.log()[-4000:]))
        health = S.health_pb2_grpc.HealthStub(d.channel).Check(
            S.health_pb2.HealthCheckRequest(service=""), timeout=T_FAST)
        self.assertEqual(health.status, SERVING)
        r = d.stub.Exists(pb.ExistsRequest(image_ref=sane_ref), timeout=T_FAST)
        self.assertTrue(r.exists, "regd no longer reads %s" % sane_ref)

    def assertCode(self, want, what, fn, *args, **kwargs):
        """Calls fn; the call must fail with `want` (a code or a tuple)."""
        codes = want if isinstance(want, tuple) else (want,)
        res, err = outcome(fn, *args, **kwargs)
        if err is None:
            self.fail("%s: want %s, got success: %.300r" % (what, [c.name for c in codes], res))
        self.assertIn(err.code(), codes, "%s: want %s, got %s: %.500r" % (
            what, [c.name for c in codes], err.code().name, err.details()))
        return err

    def assertClean(self, what, fn, *args, **kwargs):
        """The call may succeed or fail, but never as INTERNAL/UNKNOWN, and a
        status message must arrive as valid UTF-8."""
        DECODE_ERRORS.take()
        res, err = outcome(fn, *args, **kwargs)
        bad = DECODE_ERRORS.take()
        if err is not None:
            self.assertNotIn(err.code(), BROKEN, "%s: %s %.500r" % (
                what, err.code().name, err.details()))
            self.assertFalse(bad, "%s: the status message is not valid UTF-8 (%s): %.300r"
                             % (what, bad, err.details()))
            # grpc decodes a non-UTF-8 message as latin-1; the inputs here hold no
            # U+0080..U+00FF characters, so any such character is that fallback.
            latin1 = [c for c in err.details() if "\x80" <= c <= "\xff"]
            self.assertFalse(latin1, "%s: the status message was not UTF-8: %.300r"
                             % (what, err.details()))
        return res, err


def inspect(d, ref, platform=None, timeout=T):
    req = pb.InspectRequest(image_ref=ref)
    if platform:
        req.platform.CopyFrom(pb.Platform(os=platform[0], architecture=platform[1]))
    return d.stub.Inspect(req, timeout=timeout)


def get_image(d, ref, platform=None, timeout=T):
    req = pb.GetImageRequest(image_ref=ref)
    if platform:
        req.platform.CopyFrom(pb.Platform(os=platform[0], architecture=platform[1]))
    return d.stub.GetImage(req, timeout=timeout)


def exists(d, ref, timeout=T):
    return d.stub.Exists(pb.ExistsRequest(image_ref=ref), timeout=timeout)


def get_descriptor(d, ref, timeout=T):
    return d.stub.GetDescriptor(pb.GetDescriptorRequest(image_ref=ref), timeout=timeout)


def read_blob(d, repo, digest, timeout=T):
    chunks = list(d.stub.ReadBlob(pb.ReadBlobRequest(repo=repo, digest=digest), timeout=timeout))
    return b"".join(c.data for c in chunks)


def write_layer(d, repo, data, timeout=T, max_attempts=1):
    return d.stub.WriteLayer(pb.WriteLayerRequest(
        repo=repo, layer=pb.BlobSource(data=data),
        retry=retry_config(pb, max_attempts=max_attempts, initial_delay=0.05)), timeout=timeout)


def push_index(d, ref, entries, timeout=T):
    req = pb.PushIndexRequest(ref=ref)
    for e in entries:
        if isinstance(e, str):
            req.manifests.append(pb.IndexManifest(ref=e))
        else:
            req.manifests.append(e)
    return d.stub.PushIndex(req, timeout=timeout)


# -- 1. deeply nested JSON --------------------------------------------------------------

class NestedJsonTest(HostileCase):
    """Issue 6 item 1: a deep document crashed the daemon (SIGSEGV)."""

    def setUp(self):
        super().setUp()
        self.f = self.fake("fake-nested")
        self.sane_ref = serve_sane(self.f)
        self.tok = self.fake("fake-nested-token")
        self.layouts = os.path.join(ENV.workdir, "layouts-" + self.id().rsplit(".", 1)[-1])
        os.makedirs(self.layouts, exist_ok=True)
        self.d = self.daemon(insecure_registries=[self.f.host, self.tok.host],
                             allowed_paths=[self.layouts])

    def test_deep_manifest_is_invalid_argument(self):
        for name, body in DEEP:
            for ct in (OCI_MANIFEST, OCI_INDEX, "application/json"):
                with self.subTest(body=name, content_type=ct):
                    tag = "%s-%d" % (name, len(ct))
                    self.f.route("/v2/nest/manifest/manifests/" + tag,
                                 Reply(200, body, [("Content-Type", ct)]), methods=("GET", "HEAD"))
                    ref = "%s/nest/manifest:%s" % (self.f.host, tag)
                    plat = ("linux", "amd64") if ct == OCI_INDEX else None
                    self.assertCode(SC.INVALID_ARGUMENT, "Inspect", inspect, self.d, ref)
                    self.assertServing(self.d, self.sane_ref)
                    self.assertCode(SC.INVALID_ARGUMENT, "GetImage", get_image, self.d, ref, plat)
                    self.assertServing(self.d, self.sane_ref)
                    # GetDescriptor may name the content without parsing it.
                    _, err = outcome(get_descriptor, self.d, ref)
                    if err is not None:
                        self.assertEqual(err.code(), SC.INVALID_ARGUMENT, err.details())
                    self.assertServing(self.d, self.sane_ref)

    def test_deep_config_is_invalid_argument(self):
        for name, body in DEEP:
            with self.subTest(body=name):
                cfg = images.Blob(body, images.OCI_CONFIG)
                man = manifest_for(cfg)
                serve_image(self.f, "nest/config", name, man, [cfg] + SANE.layers)
                ref = "%s/nest/config:%s" % (self.f.host, name)
                self.assertCode(SC.INVALID_ARGUMENT, "Inspect", inspect, self.d, ref)
                self.assertServing(self.d, self.sane_ref)
                # GetImage hands the config over as served; it need not parse it.
                res, err = outcome(get_image, self.d, ref)
                if err is None:
                    self.assertEqual(res.raw_config, body)
                else:
                    self.assertEqual(err.code(), SC.INVALID_ARGUMENT, err.details())
                self.assertServing(self.d, self.sane_ref)
                # PushIndex reads the child's config for its platform.
                self.assertCode(SC.INVALID_ARGUMENT, "PushIndex", push_index, self.d,
                                "%s/nest/config:idx-%s" % (self.f.host, name), [name])
                self.assertServing(self.d, self.sane_ref)

    def test_deep_token_response_fails_cleanly(self):
        state = {"body": b"{}"}
        challenge = 'Bearer realm="%s/token-deep",service="fake"' % self.tok.url
        self.tok.set_gate(lambda req: Reply.error(
            401, "UNAUTHORIZED", "token needed", [("WWW-Authenticate", challenge)])
            if req.path.startswith("/v2/") else None)
        self.tok.route("/token-deep", lambda req: Reply(
            200, state["body"], [("Content-Type", "application/json")]))
        wrapped = b'{"token":"t1","expires_in":300,"x":' + DEEP[1][1] + b"}"
        for name, body in DEEP + [("token-beside-deep-array", wrapped)]:
            with self.subTest(body=name):
                state["body"] = body
                before = len(self.tok.requests(prefix="/token-deep"))
                ref = "%s/deep/app:v1" % self.tok.host
                _, err = outcome(inspect, self.d, ref)
                self.assertIsNotNone(err, "Inspect succeeded behind a deep token response")
                self.assertNotIn(err.code(), BROKEN, err.details())
                self.assertGreater(len(self.tok.requests(prefix="/token-deep")), before,
                                   "regd never fetched the token (the test proves nothing)")
                self.assertServing(self.d, self.sane_ref)

    def _layout(self, name, index_bytes, blobs):
        path = os.path.join(self.layouts, name)
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        with open(os.path.join(path, "index.json"), "wb") as f:
            f.write(index_bytes)
        for b in blobs:
            with open(os.path.join(path, "blobs", "sha256", b.hex), "wb") as f:
                f.write(b.data)
        return path

    def test_deep_layout_index_is_invalid_argument(self):
        for name, body in DEEP:
            with self.subTest(index_json=name):
                path = self._layout("deep-index-" + name, body, SANE.blobs() + [SANE.manifest])
                s = Stream(self.d.stub.PushImage(pb.PushImageRequest(
                    ref="%s/nest/push:%s" % (self.f.host, name),
                    layout=pb.OciLayout(path=path)), timeout=T))
                self.assertEqual(s.code, SC.INVALID_ARGUMENT, s.summary())
                self.assertServing(self.d, self.sane_ref)
        for name, body in DEEP:
            with self.subTest(manifest_blob=name):
                top = images.Blob(body, OCI_MANIFEST)
                index = {"schemaVersion": 2, "manifests": [top.descriptor(
                    annotations={"org.opencontainers.image.ref.name": "v1"})]}
                path = self._layout("deep-manifest-" + name, json.dumps(index).encode(),
                                    SANE.blobs() + [top])
                s = Stream(self.d.stub.PushImage(pb.PushImageRequest(
                    ref="%s/nest/push:m-%s" % (self.f.host, name),
                    layout=pb.OciLayout(path=path)), timeout=T))
                self.assertEqual(s.code, SC.INVALID_ARGUMENT, s.summary())
                self.assertServing(self.d, self.sane_ref)
        self.assertEqual(self.f.requests(method="PUT"), [], "a manifest was pushed")


# -- 2. redirects ------------------------------------------------------------------------

class RedirectTest(HostileCase):
    """Issue 6 item 4: blob GETs followed redirects anywhere."""

    def setUp(self):
        super().setUp()
        self.reg = self.fake("fake-origin")            # plain HTTP, listed, basic auth
        self.reg.basic_auth(*USER)
        self.sane_ref = serve_sane(self.reg)
        self.store = self.fake("fake-storage")         # plain HTTP, listed, no auth
        self.unlisted = self.fake("fake-unlisted")     # plain HTTP, NOT listed
        self.tls = self.fake("fake-https", tls=CERT)   # HTTPS, trusted via ca_bundle
        config = self.write_config({self.tls.host: {"ca_bundle": CERT[0]}})
        self.d = self.daemon(insecure_registries=[self.reg.host, self.store.host],
                             auths={self.reg.host: USER}, config=config)

    def blob(self, name):
        data = ("hostile redirect blob %s\n" % name).encode() * 50
        return data, sha256(data)

    def storage(self, fake, data, digest):
        fake.route("/storage/" + digest, Reply(200, data, [("Content-Type",
                                                            "application/octet-stream")]))

    def test_redirect_to_metadata_address_is_refused_at_once(self):
        for loc in ("http://169.254.169.254/latest/meta-data/",
                    "https://169.254.169.254/latest/meta-data/iam/"):
            with self.subTest(location=loc):
                data, digest = self.blob("meta-" + loc[:5])
                self.reg.route("/v2/redir/app/blobs/" + digest, Reply.redirect(loc))
                start = time.monotonic()
                err = self.assertCode(SC.PERMISSION_DENIED, "ReadBlob", read_blob, self.d,
                                      self.reg.host + "/redir/app", digest, timeout=T_FAST)
                took = time.monotonic() - start
                self.assertLess(took, 3, "refusing took %.1fs: %s" % (took, err.details()))
                self.assertServing(self.d, self.sane_ref)

    def test_redirect_to_unlisted_plain_http_host_is_refused(self):
        data, digest = self.blob("unlisted")
        self.storage(self.unlisted, data, digest)
        self.reg.route("/v2/redir/app/blobs/" + digest,
                       Reply.redirect("http://%s/storage/%s" % (self.unlisted.host, digest)))
        self.assertCode(SC.PERMISSION_DENIED, "ReadBlob", read_blob, self.d,
                        self.reg.host + "/redir/app", digest)
        self.assertEqual(self.unlisted.requests(), [], "regd followed the redirect")

    def test_https_to_http_downgrade_is_refused(self):
        # Control: the HTTPS registry works, and so does a redirect that stays HTTPS.
        ok_data, ok_digest = self.blob("https-ok")
        self.storage(self.tls, ok_data, ok_digest)
        self.tls.route("/v2/redir/app/blobs/" + ok_digest,
                       Reply.redirect("https://%s/storage/%s" % (self.tls.host, ok_digest)))
        self.assertEqual(read_blob(self.d, self.tls.host + "/redir/app", ok_digest), ok_data)
        # The store is in --insecure_registries, but the hop comes from HTTPS.
        data, digest = self.blob("downgrade")
        self.storage(self.store, data, digest)
        self.tls.route("/v2/redir/app/blobs/" + digest,
                       Reply.redirect("http://%s/storage/%s" % (self.store.host, digest)))
        self.assertCode(SC.PERMISSION_DENIED, "ReadBlob", read_blob, self.d,
                        self.tls.host + "/redir/app", digest)
        self.assertEqual(self.store.requests(), [], "regd followed HTTPS down to HTTP")

    def test_redirect_loop_is_bounded(self):
        data, digest = self.blob("loop")
        self.reg.route("/v2/redir/app/blobs/" + digest, Reply.redirect("/v2/redir/loop/a"))
        self.reg.route("/v2/redir/loop/a", Reply.redirect("/v2/redir/loop/b", 302))
        self.reg.route("/v2/redir/loop/b", Reply.redirect("/v2/redir/loop/a", 307))
        start = time.monotonic()
        err = self.assertCode(SC.FAILED_PRECONDITION, "ReadBlob", read_blob, self.d,
                              self.reg.host + "/redir/app", digest)
        self.assertIn("redirect", err.details().lower())
        self.assertLess(time.monotonic() - start, 5)
        hops = len(self.reg.requests(prefix="/v2/redir/loop/"))
        self.assertLessEqual(hops, 20, "regd followed the loop %d times" % hops)
        self.assertServing(self.d, self.sane_ref)

    def test_redirect_to_listed_host_works_without_authorization(self):
        data, digest = self.blob("listed")
        self.storage(self.store, data, digest)
        self.reg.route("/v2/redir/app/blobs/" + digest, Reply.redirect(
            "http://%s/storage/%s?X-Amz-Signature=0123abcd" % (self.store.host, digest)))
        got = read_blob(self.d, self.reg.host + "/redir/app", digest)
        self.assertEqual(got, data)
        origin = [r for r in self.reg.requests(prefix="/v2/redir/app/blobs/" + digest)]
        self.assertTrue(origin and all((r.header("Authorization") or "").startswith("Basic ")
                                       for r in origin),
                        "regd sent no credentials to the registry itself (the test proves "
                        "nothing): %r" % [(r, r.header("Authorization")) for r in origin])
        seen = self.store.requests()
        self.assertTrue(seen, "the storage host saw no request")
        leaked = [(r, r.header("Authorization")) for r in seen if r.header("Authorization")]
        self.assertEqual(leaked, [], "Authorization went to another host")


# -- 3. link-local registry ---------------------------------------------------------------

class LinkLocalTest(HostileCase):
    """Issue 6 item 4: link-local and metadata addresses were accepted as registries."""

    def test_metadata_address_is_refused_quickly(self):
        d = self.daemon()
        digest = sha256(b"x")
        calls = [
            ("Inspect", inspect, "169.254.169.254:80/x/y:z"),
            ("Inspect", inspect, "169.254.169.254/latest/meta-data:z"),
            ("Exists", exists, "169.254.169.254:80/x/y:z"),
            ("GetImage", get_image, "169.254.1.1:5000/x/y:z"),
        ]
        for what, fn, ref in calls:
            with self.subTest(rpc=what, ref=ref):
                start = time.monotonic()
                err = self.assertCode(SC.PERMISSION_DENIED, what, fn, d, ref, timeout=10)
                took = time.monotonic() - start
                self.assertLess(took, 2.5, "refusing took %.1fs: %s" % (took, err.details()))
        with self.subTest(rpc="ReadBlob"):
            start = time.monotonic()
            self.assertCode(SC.PERMISSION_DENIED, "ReadBlob", read_blob, d,
                            "169.254.169.254:80/x/y", digest, timeout=10)
            self.assertLess(time.monotonic() - start, 2.5)
        self.assertTrue(d.alive())


# -- 4. --allowed_registries --------------------------------------------------------------

class AllowedRegistriesTest(HostileCase):
    """Issue 6 item 4/What to build: --allowed_registries."""

    def setUp(self):
        super().setUp()
        self.allowed = self.fake("fake-allowed")
        self.sane_ref = serve_sane(self.allowed)
        self.other = self.fake("fake-not-allowed")
        serve_sane(self.other)
        self.d = self.daemon(
            insecure_registries=[self.allowed.host, self.other.host],
            extra_args=["--allowed_registries=%s,*.example.com" % self.allowed.host])

    def test_other_registry_is_refused_before_any_request(self):
        o = self.other.host
        calls = [
            ("Inspect", inspect, (o + "/sane/app:v1",)),
            ("Exists", exists, (o + "/sane/app:v1",)),
            ("GetDescriptor", get_descriptor, (o + "/sane/app:v1",)),
            ("GetImage", get_image, (o + "/sane/app:v1",)),
            ("ReadBlob", read_blob, (o + "/sane/app", SANE.config.digest)),
            ("WriteLayer", write_layer, (o + "/up/app", b"inline layer bytes")),
            ("PushIndex", push_index, (o + "/sane/app:idx", ["v1"])),
        ]
        for what, fn, args in calls:
            with self.subTest(rpc=what):
                self.assertCode(SC.PERMISSION_DENIED, what, fn, self.d, *args)
                self.assertEqual(self.other.requests(), [],
                                 "%s sent requests to a registry not allowed" % what)
        spec = pb.ImageSpec(config=pb.BlobSource(data=SANE.config.data),
                            layers=[pb.BlobSource(data=SANE.layers[0].data)])
        s = Stream(self.d.stub.PushImage(pb.PushImageRequest(ref=o + "/up/app:v1", image=spec),
                                         timeout=T))
        self.assertEqual(s.code, SC.PERMISSION_DENIED, s.summary())
        self.assertEqual(self.other.requests(), [], "PushImage sent requests")

    def test_allowed_registry_still_works(self):
        r = inspect(self.d, self.sane_ref)
        self.assertEqual(r.digest, SANE.digest)
        self.assertEqual(dict(r.labels), SANE.labels)
        self.assertTrue(exists(self.d, self.sane_ref).exists)
        data = read_blob(self.d, self.allowed.host + "/sane/app", SANE.layers[0].digest)
        self.assertEqual(data, SANE.layers[0].data)

    def test_redirect_out_of_the_allow_list_is_refused(self):
        data = b"allowed-list redirect" * 40
        digest = sha256(data)
        self.other.route("/storage/" + digest, Reply(200, data))
        self.allowed.route("/v2/sane/app/blobs/" + digest,
                           Reply.redirect("http://%s/storage/%s" % (self.other.host, digest)))
        self.assertCode(SC.PERMISSION_DENIED, "ReadBlob", read_blob, self.d,
                        self.allowed.host + "/sane/app", digest)
        self.assertEqual(self.other.requests(), [], "regd followed the redirect")

    def test_wildcard_patterns_start_and_apply(self):
        d = self.daemon(insecure_registries=[self.other.host], extra_args=[
            "--allowed_registries=*.example.com,registry.example.com:5000"])
        health = S.health_pb2_grpc.HealthStub(d.channel).Check(
            S.health_pb2.HealthCheckRequest(service=""), timeout=T_FAST)
        self.assertEqual(health.status, SERVING)
        self.assertCode(SC.PERMISSION_DENIED, "Exists", exists, d, self.other.host + "/sane/app:v1")
        self.assertEqual(self.other.requests(), [])

    def test_bad_pattern_exits_2_at_startup(self):
        d = Daemon(ENV.workdir, ready_timeout=10, extra_args=["--allowed_registries=a b"])
        self._extra.append(("regd-bad-pattern", d.stderr_path))
        try:
            with self.assertRaises(DaemonError) as cm:
                d.start()
            self.assertIn("exited with", str(cm.exception), "regd should fail fast")
            self.assertEqual(d.proc.returncode, 2, "exit code for a bad --allowed_registries:\n"
                             + d.log())
            self.assertIn("allowed_registries", d.log())
        finally:
            d.kill()


# -- 5. challenges that go bad, then good -------------------------------------------------

class ScriptedBearer:
    """Bearer auth on a fake whose challenge and token service tests change.

    /v2/ without an accepted token answers 401 with `challenge`; other /v2/
    paths do too, with the challenge only when `challenge_on_refusal`.
    """

    def __init__(self, fake):
        self.fake = fake
        self.challenge = None
        self.challenge_on_refusal = True
        self.accept = {"t-good"}
        fake.set_gate(self.gate)
        fake.route("/token-good", Reply.json({"token": "t-good", "expires_in": 300}))
        fake.route("/token-old", Reply.json({"token": "t-old", "expires_in": 300}))
        fake.route("/token-500", Reply.error(500, "UNKNOWN", "token service down"))
        fake.route("/token-badjson", Reply(200, b"{this is not json",
                                           [("Content-Type", "application/json")]))

    def realm(self, path):
        return 'Bearer realm="%s%s",service="fake"' % (self.fake.url, path)

    def gate(self, req):
        if not req.path.startswith("/v2/"):
            return None
        auth = req.header("Authorization") or ""
        if auth.startswith("Bearer ") and auth[7:] in self.accept:
            return None
        headers = []
        if req.path == "/v2/" or self.challenge_on_refusal:
            headers.append(("WWW-Authenticate", self.challenge))
        return Reply.error(401, "UNAUTHORIZED", "authentication required", headers)


class ChallengeTest(HostileCase):
    """Issue 6 item 7: a bad challenge from /v2/ was cached until restart."""

    def setUp(self):
        super().setUp()
        self.f = self.fake("fake-challenge")
        self.bearer = ScriptedBearer(self.f)
        self.ref = serve_sane(self.f)
        self.d = self.daemon(insecure_registries=[self.f.host])

    def fails_then_recovers(self, bad_challenge, asked=None):
        self.bearer.challenge = bad_challenge
        _, err = outcome(inspect, self.d, self.ref)
        self.assertIsNotNone(err, "Inspect succeeded while the registry's auth was broken")
        self.assertNotIn(err.code(), BROKEN, err.details())
        if asked:
            self.assertTrue(self.f.requests(prefix=asked),
                            "regd never asked %s (the test proves nothing)" % asked)
        first_error = "%s: %s" % (err.code().name, err.details())
        # The registry is fixed.
        self.bearer.challenge = self.bearer.realm("/token-good")
        mark = len(self.f.requests())
        deadline = time.monotonic() + 10
        while True:
            res, err = outcome(inspect, self.d, self.ref, timeout=5)
            if err is None:
                break
            if time.monotonic() > deadline:
                after = self.f.requests()[mark:]
                self.fail("regd still fails 10 s after the registry was fixed: %s: %s\n"
                          "(first failure: %s)\nrequests after the fix: %r"
                          % (err.code().name, err.details(), first_error, after[:20]))
            time.sleep(0.5)
        self.assertEqual(res.digest, SANE.digest)

    def test_token_service_500_then_fixed(self):
        self.fails_then_recovers(self.bearer.realm("/token-500"), "/token-500")

    def test_token_service_invalid_json_then_fixed(self):
        self.fails_then_recovers(self.bearer.realm("/token-badjson"), "/token-badjson")

    def test_challenge_without_realm_then_fixed(self):
        self.fails_then_recovers('Bearer service="fake",scope="repository:sane/app:pull"')

    def test_unknown_scheme_then_fixed(self):
        self.fails_then_recovers('Fancy realm="somewhere"')

    def test_refused_token_rereads_the_challenge(self):
        # /v2/ points at a token service whose tokens the registry refuses, and
        # the refusals carry no challenge: only a fresh GET /v2/ finds the new realm.
        self.bearer.challenge_on_refusal = False
        self.fails_then_recovers(self.bearer.realm("/token-old"), "/token-old")

    def test_refused_token_adopts_the_refusals_challenge(self):
        self.bearer.challenge_on_refusal = True
        self.fails_then_recovers(self.bearer.realm("/token-old"), "/token-old")


# -- 6. invalid UTF-8 from the registry ----------------------------------------------------

class Utf8Test(HostileCase):
    """Issue 6 item 9: invalid UTF-8 reached proto strings; clients saw INTERNAL."""

    def setUp(self):
        super().setUp()
        self.f = self.fake("fake-utf8")
        self.sane_ref = serve_sane(self.f)
        self.d = self.daemon(insecure_registries=[self.f.host])

    def all_reads(self, ref, platform=None):
        out = {}
        for what, fn, args in (("GetDescriptor", get_descriptor, ()),
                               ("Exists", exists, ()),
                               ("Inspect", inspect, (platform,)),
                               ("GetImage", get_image, (platform or ("linux", "amd64"),))):
            with self.subTest(rpc=what, ref=ref.split("/", 1)[1]):
                out[what] = self.assertClean(what, fn, self.d, ref, *args)
        return out

    def route_manifest(self, tag, body, headers, status=200):
        self.f.route("/v2/utf/app/manifests/" + tag, Reply(status, body, headers),
                     methods=("GET", "HEAD"))
        return "%s/utf/app:%s" % (self.f.host, tag)

    def test_content_type_header(self):
        serve_image(self.f, "utf/app", "plain", SANE.manifest, SANE.blobs())
        for i, ct in enumerate([b"application/vnd.oci.image.manifest.v1+json\xff\xfe",
                                b"\xff\xfe\xfd",
                                b"application/vnd.oci.image.manifest.v1+json; charset=\xc3\x28"]):
            ref = self.route_manifest("ct%d" % i, SANE.manifest.data, [
                ("Content-Type", ct), ("Docker-Content-Digest", SANE.digest)])
            self.all_reads(ref)
        self.assertServing(self.d, self.sane_ref)

    def test_garbage_digest_header(self):
        for i, dcd in enumerate([b"sha256:\xff\xfe\xfd", b"\xc3\x28garbage", b"garbage",
                                 b"sha256:" + b"z" * 64, b"sha256:" + b"A" * 64,
                                 b"sha256:" + b"0" * 64 + b"\xff"]):
            ref = self.route_manifest("dcd%d" % i, SANE.manifest.data, [
                ("Content-Type", OCI_MANIFEST), ("Docker-Content-Digest", dcd)])
            got = self.all_reads(ref)
            desc, err = got.get("GetDescriptor", (None, None))
            with self.subTest(header=dcd, check="GetDescriptor digest"):
                # Descriptor.digest is "sha256:<64 hex>": a garbage header is
                # refused, or the manifest fetched and hashed instead.
                if err is None and desc is not None:
                    self.assertRegex(desc.digest, r"^sha256:[0-9a-f]{64}$",
                                     "GetDescriptor passed on the header %r" % dcd)
        self.assertServing(self.d, self.sane_ref)

    def test_error_bodies(self):
        bad_json = (b'{"errors":[{"code":"DENIED\xff\xfe","message":"no \xc3\x28 way \xff",'
                    b'"detail":"\xfe"}]}')
        cases = [
            ("e400", 400, bad_json, "application/json"),
            ("e403", 403, b"\xff\xfe\xfd\x00 raw bytes", "text/plain"),
            ("e404", 404, bad_json, "application/json"),
            ("e409", 409, bad_json, b"application/json\xff"),
        ]
        for tag, status, body, ct in cases:
            ref = self.route_manifest(tag, body, [("Content-Type", ct)], status)
            got = self.all_reads(ref)
            for what, (res, err) in got.items():
                if what != "Exists":
                    self.assertIsNotNone(err, "%s succeeded on a %d" % (what, status))
        digest = sha256(b"utf8 blob")
        self.f.route("/v2/utf/app/blobs/" + digest, Reply(400, bad_json,
                                                           [("Content-Type", "application/json")]))
        _, err = self.assertClean("ReadBlob", read_blob, self.d, self.f.host + "/utf/app", digest)
        self.assertIsNotNone(err)
        self.assertServing(self.d, self.sane_ref)

    def test_strings_inside_documents(self):
        # A config whose labels are not UTF-8 (raw bytes, and a lone surrogate escape).
        for i, labels in enumerate([b'{"k\xff":"v\xfe\xfd"}', b'{"k":"\\udc80"}',
                                    b'{"\\ud800x":"v"}']):
            cfg = images.Blob(b'{"architecture":"amd64","os":"linux","config":{"Labels":' + labels +
                              b'},"rootfs":{"type":"layers","diff_ids":[]}}', images.OCI_CONFIG)
            man = manifest_for(cfg)
            serve_image(self.f, "utf/app", "labels%d" % i, man, [cfg] + SANE.layers)
            self.all_reads("%s/utf/app:labels%d" % (self.f.host, i))
        # An index whose entry's platform and annotations are not UTF-8.
        index = (b'{"schemaVersion":2,"mediaType":"' + OCI_INDEX.encode() + b'","manifests":[{'
                 b'"mediaType":"' + OCI_MANIFEST.encode() + b'","digest":"' +
                 SANE.digest.encode() + b'","size":' + str(SANE.manifest.size).encode() +
                 b',"platform":{"os":"linux\xff","architecture":"amd64"},'
                 b'"annotations":{"a\xfe":"b\xff"}}],"annotations":{"x":"\xc3\x28"}}')
        ref = self.route_manifest("index", index, [("Content-Type", OCI_INDEX)])
        self.all_reads(ref)
        # A manifest served as plain JSON whose own mediaType is not UTF-8.
        body = SANE.manifest.data.replace(OCI_MANIFEST.encode(),
                                          b"application/vnd.oci.image.manifest.v1+json\xff")
        ref = self.route_manifest("mt", body, [("Content-Type", "application/json")])
        self.all_reads(ref)
        self.assertServing(self.d, self.sane_ref)

    def test_unknown_auth_scheme_with_invalid_bytes(self):
        g = self.fake("fake-utf8-auth")
        g.set_gate(lambda req: Reply(401, b"\xff", [(
            "WWW-Authenticate", b'Fancy\xff\xfe realm="\xff\xfe", Bearer\xc3\x28 realm="x\xff"')])
            if req.path.startswith("/v2/") else None)
        d = self.daemon(insecure_registries=[g.host, self.f.host])
        _, err = self.assertClean("Inspect", inspect, d, g.host + "/a/b:c")
        self.assertIsNotNone(err)
        self.assertServing(d, self.sane_ref)


# -- 7. secrets in registry error bodies --------------------------------------------------

BASIC_SECRET = "dXNlcjpwYXNzd29yZA=="
JWT_SECRET = ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
              "abcdefghijklmnopqrstuvwxyz012345")
FORM_SECRET = "supersecretvalue123"
# What must never show: each value, and the parts of the JWT that are secret.
SECRET_PIECES = [BASIC_SECRET, "dXNlcjpwYXNzd29yZA", JWT_SECRET, "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
                 "abcdefghijklmnopqrstuvwxyz012345", FORM_SECRET]
LEAKY = ("proxy echo: Authorization: Basic %s; forwarded Bearer %s; upstream said "
         "token=%s&scope=pull" % (BASIC_SECRET, JWT_SECRET, FORM_SECRET))
# Each form alone (one redaction rule must not hide another's absence), then all.
LEAKY_MESSAGES = [
    ("authorization-header", "proxy echo: Authorization: Basic %s" % BASIC_SECRET),
    ("bearer", "upstream refused Bearer %s for this scope" % JWT_SECRET),
    ("form-field", "callback https://auth.example/cb?token=%s&state=1 failed" % FORM_SECRET),
    ("json-field", 'backend said {"password": "%s", "user": "u"}' % FORM_SECRET),
    ("all", LEAKY),
]
LEAKY_BLOB = sha256(b"leaky blob")


class SecretsTest(HostileCase):
    """Issue 6 item 9: registry error bodies were copied verbatim into statuses and logs."""

    def setUp(self):
        super().setUp()
        self.f = self.fake("fake-secrets")
        self.sane_ref = serve_sane(self.f)
        self.d = self.daemon(insecure_registries=[self.f.host])

    def assertNoSecrets(self, what, text):
        for piece in SECRET_PIECES:
            self.assertNotIn(piece, text, "%s leaks %s...: %.600r" % (what, piece[:12], text))

    def route_echo(self, message):
        """Every path the calls below touch answers with `message` in its error."""
        def err(status, code="DENIED"):
            return Reply.json({"errors": [{"code": code, "message": message}]}, status)
        self.f.route("/v2/leak/app/manifests/json", err(400))
        self.f.route("/v2/leak/app/manifests/detail", Reply.json({"errors": [{
            "code": "DENIED", "message": "denied", "detail": {"echo": message}}]}, 400))
        self.f.route("/v2/leak/app/manifests/raw", Reply(400, message,
                                                         [("Content-Type", "text/plain")]))
        self.f.route("/v2/leak/app/blobs/" + LEAKY_BLOB, err(403))
        # Uploads: the blob is absent; the session POST is refused with the echo,
        # finally (400) or retryably (503, which also makes a RetryEvent).
        self.f.route(re.compile(r"/v2/leak/app/blobs/uploads/.*"), err(400))
        self.f.route(re.compile(r"/v2/leak/retry/blobs/uploads/.*"), err(503, "UNAVAILABLE"))

    def test_echoed_credentials_are_redacted(self):
        h = self.f.host
        calls = [
            ("Inspect", inspect, (h + "/leak/app:json",)),
            ("Inspect(detail)", inspect, (h + "/leak/app:detail",)),
            ("Inspect(raw)", inspect, (h + "/leak/app:raw",)),
            ("GetImage", get_image, (h + "/leak/app:json",)),
            ("GetDescriptor", get_descriptor, (h + "/leak/app:json",)),
            ("ReadBlob", read_blob, (h + "/leak/app", LEAKY_BLOB)),
            ("PushIndex", push_index, (h + "/leak/app:idx", ["json"])),
            ("WriteLayer", write_layer, (h + "/leak/app", b"leaky layer")),
        ]
        mark = log_size(self.d)
        for kind, message in LEAKY_MESSAGES:
            self.route_echo(message)
            for what, fn, args in calls:
                with self.subTest(echo=kind, rpc=what):
                    res, err = outcome(fn, self.d, *args)
                    self.assertIsNotNone(err, "%s succeeded: %.200r" % (what, res))
                    self.assertNotIn(err.code(), BROKEN)
                    self.assertNoSecrets("the %s status" % what, err.details())
            with self.subTest(echo=kind, rpc="WriteLayer(retried)"):
                s = Stream(write_layer(self.d, h + "/leak/retry", b"leaky layer 2",
                                       max_attempts=2))
                self.assertNotEqual(s.code, SC.OK, s.summary())
                self.assertTrue(s.retries(), "no RetryEvent (nothing checked): " + s.summary())
                for ev in s.events:
                    self.assertNoSecrets("a WriteLayer event", str(ev))
                self.assertNoSecrets("the WriteLayer status", s.details)
        log = log_since(self.d, mark).decode("utf-8", "replace")
        self.assertNoSecrets("regd's log", log)
        self.assertTrue(self.f.requests(prefix="/v2/leak/"), "regd asked nothing")

    def test_huge_error_body_gives_a_short_message(self):
        big = "x" * 30000 + " " + LEAKY + " " + "y" * 30000
        self.f.route("/v2/leak/app/manifests/json", Reply.json(
            {"errors": [{"code": "DENIED", "message": big}]}, 400))
        self.f.route("/v2/leak/app/manifests/raw", Reply(400, big, [("Content-Type",
                                                                    "text/plain")]))
        self.f.route("/v2/leak/app/manifests/start", Reply.json(
            {"errors": [{"code": "DENIED", "message": LEAKY + " " + "z" * 60000}]}, 400))
        for tag in ("json", "raw", "start"):
            with self.subTest(tag=tag):
                mark = log_size(self.d)
                err = self.assertCode(SC.INVALID_ARGUMENT, "Inspect", inspect, self.d,
                                      "%s/leak/app:%s" % (self.f.host, tag))
                n = len(err.details().encode())
                self.assertLess(n, 1024, "a %d-byte message: %.300r..." % (n, err.details()))
                self.assertNoSecrets("the status", err.details())
                grew = log_size(self.d) - mark
                self.assertLess(grew, 4096, "one failed call logged %d bytes" % grew)
                self.assertNoSecrets("regd's log",
                                     log_since(self.d, mark).decode("utf-8", "replace"))


# -- 8. unbounded caller input -------------------------------------------------------------

class CallerInputTest(HostileCase):
    """Issue 6 item 8: a 1 MiB repo name gave an 8 MB log line and RESOURCE_EXHAUSTED."""

    def test_huge_names_are_invalid_argument_with_short_messages(self):
        f = self.fake("fake-caller-input")
        sane_ref = serve_sane(f)
        d = self.daemon(insecure_registries=[f.host])
        h = f.host
        huge = "a" * (1 << 20)
        many = "a/" * (1 << 19) + "b"
        spec = pb.ImageSpec(config=pb.BlobSource(data=SANE.config.data),
                            layers=[pb.BlobSource(data=SANE.layers[0].data)])
        calls = [
            ("Inspect", inspect, (h + "/" + huge + ":v1",)),
            ("Inspect(components)", inspect, (h + "/" + many + ":v1",)),
            ("Inspect(tag)", inspect, (h + "/x/y:" + "t" * (1 << 20),)),
            ("Exists", exists, (h + "/" + huge + ":v1",)),
            ("GetDescriptor", get_descriptor, (h + "/" + huge + ":v1",)),
            ("GetImage", get_image, (h + "/" + huge + ":v1",)),
            ("ReadBlob", read_blob, (h + "/" + huge, SANE.config.digest)),
            ("ReadBlob(digest)", read_blob, (h + "/x/y", "sha256:" + "a" * (1 << 20))),
            ("WriteLayer", write_layer, (h + "/" + huge, b"inline")),
            ("PushIndex", push_index, (h + "/" + huge + ":v1", ["v1"])),
            ("PushIndex(entry)", push_index, (h + "/x/y:v1", ["e" * (1 << 20)])),
            ("PushImage", lambda dd, ref: dd.stub.PushImage(
                pb.PushImageRequest(ref=ref, image=spec), timeout=T), (h + "/" + huge + ":v1",)),
        ]
        for what, fn, args in calls:
            with self.subTest(rpc=what):
                mark = log_size(d)
                err = self.assertCode(SC.INVALID_ARGUMENT, what, fn, d, *args)
                n = len(err.details().encode())
                self.assertLess(n, 1024, "%s: a %d-byte message: %.200r..." % (what, n,
                                                                              err.details()))
                grew = log_size(d) - mark
                self.assertLess(grew, 10 * 1024, "%s: one call logged %d bytes" % (what, grew))
        self.assertEqual(f.requests(), [], "regd sent requests for invalid names")
        self.assertServing(d, sane_ref)


# -- 9. PushIndex entries ---------------------------------------------------------------------

class PushIndexTest(HostileCase):
    """Issue 6 item 8/9: PushIndex entries skipped validation, and had no cap."""

    def setUp(self):
        super().setUp()
        self.f = self.fake("fake-pushindex")
        serve_image(self.f, "idx/app", "latest", SANE.manifest, SANE.blobs())
        self.sane_ref = "%s/idx/app:latest" % self.f.host
        self.f.route(re.compile(r"/v2/idx/app/manifests/[^/]+"), self.accept_put,
                     methods=("PUT",))
        self.d = self.daemon(insecure_registries=[self.f.host])

    @staticmethod
    def accept_put(req):
        digest = sha256(req.body)
        return Reply(201, b"", [("Location", "/v2/idx/app/manifests/" + digest),
                                ("Docker-Content-Digest", digest)])

    def manifest_requests(self):
        return [r for r in self.f.requests() if r.path.startswith("/v2/idx/app/")]

    def test_control_a_valid_entry_is_pushed(self):
        r = push_index(self.d, "%s/idx/app:multi" % self.f.host, ["latest"])
        self.assertTrue(r.digest.startswith("sha256:"))
        self.assertTrue(self.f.requests(method="PUT"), "the index was not pushed")

    def test_entries_that_are_not_tags_are_refused_before_any_fetch(self):
        for entry in ("latest?x=1", "latest\x00junk", "latest#frag", "latest%2F..%2Fx",
                      "latest x"):
            with self.subTest(entry=entry):
                self.f.clear_requests()
                self.assertCode(SC.INVALID_ARGUMENT, "PushIndex", push_index, self.d,
                                "%s/idx/app:bad" % self.f.host, [entry])
                self.assertEqual(self.manifest_requests(), [],
                                 "regd fetched something for entry %r" % entry)

    def test_more_than_1024_entries_are_refused_before_any_fetch(self):
        entries = [pb.IndexManifest(ref=SANE.digest, platform=pb.Platform(
            os="linux", architecture="amd64")) for _ in range(1025)]
        self.f.clear_requests()
        self.assertCode(SC.INVALID_ARGUMENT, "PushIndex", push_index, self.d,
                        "%s/idx/app:huge" % self.f.host, entries, timeout=60)
        self.assertEqual(self.manifest_requests(), [], "regd fetched entries of a 1025-entry index")
        self.assertServing(self.d, self.sane_ref)


# -- review of the fixes: helpers ---------------------------------------------------------------

def proc_status_kib(pid, field):
    """A VmRSS/VmHWM-style field of /proc/PID/status, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


sanitized_binary = paths.regd_is_sanitized


def absl_seconds(text):
    """An absl duration as regd logs it ("2.013s", "530ms", "1m2.5s", "0") in seconds."""
    if text == "0":
        return 0.0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([0-9.]+)(h|ms|us|ns|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError("not a duration: %r" % text)
    return sum(float(n) * units[u] for n, u in parts)


def call_line(d, rpc, target):
    """regd's closing log line for the call `rpc` on `target` ("... CODE in DUR: ..."),
    as (code, seconds), or None while there is none."""
    pat = re.compile(r"\b%s %s (\w+) in (\S+?):?(?:\s|$)" % (rpc, re.escape(target)))
    m = pat.search(d.log())
    if m is None:
        return None
    return m.group(1), absl_seconds(m.group(2))


# -- 10. a redirected host's 401 ------------------------------------------------------------------

class RedirectChallengeTest(HostileCase):
    """Review: a 401 from a storage host regd was redirected to replaced the
    registry's challenge; regd then fetched a token from that host's realm
    (sending the registry's credentials) and used it on the registry."""

    def test_storage_hosts_401_never_reaches_its_realm_nor_replaces_the_registrys_auth(self):
        a = self.fake("fake-r401-registry")       # plain HTTP, Basic credentials
        a.basic_auth(*USER)
        sane_ref = serve_sane(a)
        b = self.fake("fake-r401-storage")        # the storage host: 401 + Bearer challenge
        c = self.fake("fake-r401-attacker")       # the realm B names
        c.route("/token", Reply.json({"token": "attacker-token", "expires_in": 3600}))
        b.route(re.compile(r"/storage/.*"), Reply.error(
            401, "UNAUTHORIZED", "signature expired",
            [("WWW-Authenticate", 'Bearer realm="%s/token",service="evil",'
              'scope="repository:r401/app:pull"' % c.url)]))
        data = b"blob behind a storage host that answers 401\n" * 20
        digest = sha256(data)
        a.route("/v2/r401/app/blobs/" + digest,
                Reply.redirect("http://%s/storage/%s" % (b.host, digest)))
        d = self.daemon(insecure_registries=[a.host, b.host], auths={a.host: USER})

        err = self.assertCode((SC.UNAUTHENTICATED, SC.PERMISSION_DENIED, SC.FAILED_PRECONDITION),
                              "ReadBlob", read_blob, d, a.host + "/r401/app", digest)
        self.assertTrue(b.requests(), "regd never reached the storage host (the test proves "
                        "nothing): %s" % err.details())
        self.assertEqual([(r, r.header("Authorization")) for r in b.requests()
                          if r.header("Authorization")], [],
                         "the storage host saw an Authorization header")
        self.assertEqual(c.requests(), [],
                         "regd asked the realm a storage host named (with %r)"
                         % [r.header("Authorization") for r in c.requests()])

        # The registry's own auth is intact: it still gets Basic, never a Bearer token.
        self.assertTrue(exists(d, sane_ref).exists)
        self.assertEqual(read_blob(d, a.host + "/sane/app", SANE.layers[0].digest),
                         SANE.layers[0].data)
        bearer = [(q, q.header("Authorization")) for q in a.requests()
                  if "bearer" in (q.header("Authorization") or "").lower()
                  or "attacker-token" in (q.header("Authorization") or "")]
        self.assertEqual(bearer, [], "the registry was sent a Bearer token")
        late = [q for q in a.requests() if q.path.startswith("/v2/sane/app/")]
        self.assertTrue(late)
        self.assertTrue(all((q.header("Authorization") or "").startswith("Basic ") for q in late),
                        "calls after the 401 did not use Basic: %r"
                        % [(q, q.header("Authorization")) for q in late])
        self.assertEqual(c.requests(), [], "the attacker's realm was asked later")


# -- 11. the clean-up after a failed upload is bounded ------------------------------------------

class CleanupBoundTest(HostileCase):
    """Review: the clean-up DELETE of a failed upload was bounded only by the
    stall timeout, so an endless (or drip-fed) error body held the call, and
    with it a call slot, forever."""

    def test_endless_delete_body_does_not_pin_the_only_call_slot(self):
        f = self.fake("fake-cleanup")
        sane_ref = serve_sane(f)
        state = {"n": 0, "delete": None}

        def open_session(req):
            state["n"] += 1
            return Reply(202, b"", [("Location", "/v2/clean/app/blobs/uploads/s%d" % state["n"]),
                                    ("Range", "0-0")])
        f.route("/v2/clean/app/blobs/uploads/", open_session, methods=("POST",))
        f.route(re.compile(r"/v2/clean/app/blobs/uploads/s\d+"), Reply.error(
            400, "BLOB_UPLOAD_INVALID", "no"), methods=("PUT", "PATCH"))
        f.route(re.compile(r"/v2/clean/app/blobs/uploads/s\d+"), lambda req: state["delete"],
                methods=("DELETE",))
        d = self.daemon(insecure_registries=[f.host], extra_args=["--max_concurrent_calls=1"])

        cases = [
            # Full speed, for ever: the error body must be cut at its cap.
            ("endless", Reply.endless(500, limit=90, headers=[("Content-Type", "text/plain")])),
            # One byte every 0.3 s, which no stall check catches: the clean-up's own limit.
            ("drip", Reply.drip(500, interval=0.3, limit=90)),
        ]
        for kind, reply in cases:
            with self.subTest(delete_body=kind):
                state["delete"] = reply
                deletes = len(f.requests(method="DELETE"))
                start = time.monotonic()
                s = Stream(write_layer(d, f.host + "/clean/app",
                                       ("cleanup %s layer" % kind).encode(), timeout=30))
                took = time.monotonic() - start
                self.assertNotIn(s.code, (SC.OK, SC.DEADLINE_EXCEEDED) + BROKEN, s.summary())
                self.assertGreater(len(f.requests(method="DELETE")), deletes,
                                   "regd sent no clean-up DELETE (the test proves nothing): "
                                   + s.summary())
                self.assertLess(took, 20, "the WriteLayer ended only after %.1fs" % took)
                # The only call slot is free again.
                admitted = None
                last = None
                while time.monotonic() - start < 25:
                    res, err = outcome(exists, d, sane_ref, timeout=5)
                    if err is None:
                        admitted = time.monotonic() - start
                        self.assertTrue(res.exists)
                        break
                    last = err
                    self.assertEqual(err.code(), SC.RESOURCE_EXHAUSTED, err.details())
                    time.sleep(0.1)
                self.assertIsNotNone(admitted, "no call admitted within 25 s of the failed "
                                     "upload: %s" % (last and last.details()))
                sys.stderr.write("[%s: WriteLayer %s in %.1fs, next call admitted at %.1fs] "
                                 % (kind, s.code.name, took, admitted))
        start = time.monotonic()
        rc = d.stop(check=False)
        self.assertEqual(rc, 0, "regd exited with %s after SIGTERM" % rc)
        self.assertLess(time.monotonic() - start, 10)


# -- 12. proxy environment --------------------------------------------------------------------

PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


class ProxyEnvTest(HostileCase):
    """Review: libcurl honoured http(s)_proxy, so the egress checks saw only the
    proxy's (loopback) address: 169.254.169.254 was reached through it."""

    def test_proxy_variables_are_ignored(self):
        proxy = ConnectionRecorder().start()
        self.addCleanup(proxy.stop)
        f = self.fake("fake-proxy-direct")
        sane_ref = serve_sane(f)
        env = {k: proxy.url for k in PROXY_VARS}
        env.update(no_proxy="", NO_PROXY="")
        d = self.daemon(insecure_registries=[f.host], env=env)
        for ref in ("169.254.169.254/latest/meta-data:v1", "[fe80::1]/a/b:v1",
                    "169.254.169.254:80/x/y:z"):
            with self.subTest(ref=ref):
                self.assertCode(SC.PERMISSION_DENIED, "Exists", exists, d, ref, timeout=T_FAST)
        self.assertEqual(proxy.connections(), [], "regd went through the proxy")
        # A plain-HTTP registry is reached directly.
        self.assertTrue(exists(d, sane_ref, timeout=T_FAST).exists)
        self.assertTrue(f.requests(prefix="/v2/sane/app/"), "the registry saw nothing")
        self.assertEqual(read_blob(d, f.host + "/sane/app", SANE.layers[0].digest),
                         SANE.layers[0].data)
        self.assertEqual(proxy.connections(), [], "regd went through the proxy")


# -- 13. token realms and the egress policy ------------------------------------------------------

class RealmEgressTest(HostileCase):
    """Review: the realm of a Bearer challenge was fetched whatever the egress
    policy said: a host outside --allowed_registries, HTTP for an HTTPS registry."""

    def test_realm_outside_the_allow_list_is_refused_until_listed(self):
        c = self.fake("fake-realm-host")
        c.route("/token", Reply.json({"token": "t-realm", "expires_in": 300}))
        a = self.fake("fake-realm-registry")
        bearer = ScriptedBearer(a)
        bearer.challenge = 'Bearer realm="%s/token",service="fake"' % c.url
        bearer.accept = {"t-realm"}
        sane_ref = serve_sane(a)

        d = self.daemon(insecure_registries=[a.host],
                        extra_args=["--allowed_registries=" + a.host])
        err = self.assertCode(SC.PERMISSION_DENIED, "Exists", exists, d, sane_ref)
        self.assertTrue(a.requests(prefix="/v2/"), "regd never asked the registry")
        self.assertEqual(c.requests(), [], "regd asked a token host not in --allowed_registries")
        self.assertIn(c.host, err.details())

        listed = self.daemon(insecure_registries=[a.host],
                             extra_args=["--allowed_registries=%s,%s" % (a.host, c.host)])
        self.assertTrue(exists(listed, sane_ref).exists)
        self.assertTrue(c.requests(prefix="/token"), "the listed token host was not asked")

    def test_https_registry_with_plain_http_realm_is_refused(self):
        c = self.fake("fake-realm-plain")
        c.route("/token", Reply.json({"token": "t-tls", "expires_in": 300}))
        t = self.fake("fake-realm-https", tls=CERT)
        t.route("/token-self", Reply.json({"token": "t-tls", "expires_in": 300}))
        bearer = ScriptedBearer(t)
        bearer.challenge = 'Bearer realm="%s/token",service="fake"' % c.url   # http://
        bearer.accept = {"t-tls"}
        sane_ref = serve_sane(t)
        config = self.write_config({t.host: {"ca_bundle": CERT[0]}})
        # Both hosts are allowed: only the step down to HTTP is wrong. No
        # credentials: the old check only covered those.
        d = self.daemon(config=config,
                        extra_args=["--allowed_registries=%s,%s" % (t.host, c.host)])
        self.assertCode(SC.PERMISSION_DENIED, "Exists", exists, d, sane_ref)
        self.assertTrue(t.requests(prefix="/v2/"), "regd never asked the registry")
        self.assertEqual(c.requests(), [], "regd fetched an HTTPS registry's token over HTTP")
        # Control: the same registry with an HTTPS realm works (the challenge is re-read).
        bearer.challenge = 'Bearer realm="%s/token-self",service="fake"' % t.url
        deadline = time.monotonic() + 10
        while True:
            res, err = outcome(exists, d, sane_ref, timeout=T_FAST)
            if err is None or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertIsNone(err, "the HTTPS realm did not work: %s" % (err and err.details()))
        self.assertTrue(res.exists)
        self.assertEqual(c.requests(), [])


# -- 14. waiting for another caller's token ------------------------------------------------------

class TokenWaiterTest(HostileCase):
    """Review: a caller waiting for another caller's token fetch ignored its own
    cancel: a 2 s deadline held a call slot for as long as the fetch took."""

    def test_waiter_for_a_stalled_token_fetch_ends_at_its_deadline(self):
        release = threading.Event()
        self.addCleanup(release.set)
        c = self.fake("fake-slow-token")

        def slow_token(req):
            release.wait(20)   # the token service stalls (up to 20 s)
            return Reply.json({"token": "t-slow", "expires_in": 300})
        c.route("/token", slow_token)
        a = self.fake("fake-slow-registry")
        bearer = ScriptedBearer(a)
        bearer.challenge = 'Bearer realm="%s/token",service="fake"' % c.url
        bearer.accept = {"t-slow"}
        other = self.fake("fake-slow-other")
        other_ref = serve_sane(other)
        d = self.daemon(insecure_registries=[a.host, other.host],
                        extra_args=["--max_concurrent_calls=2"])

        first = {}

        def caller1():
            first["res"], first["err"] = outcome(exists, d, a.host + "/slow/app:v1", timeout=40)
        th = threading.Thread(target=caller1, daemon=True)
        th.start()
        self.addCleanup(th.join, 30)
        # Caller 1 is inside the token fetch.
        deadline = time.monotonic() + 10
        while not c.requests(prefix="/token"):
            self.assertLess(time.monotonic(), deadline, "caller 1 never asked for a token")
            time.sleep(0.05)
        time.sleep(0.3)

        # Caller 2, same registry and scope, 2 s deadline: it waits for caller 1's fetch.
        start = time.monotonic()
        self.assertCode(SC.DEADLINE_EXCEEDED, "Exists (2 s deadline)", exists, d,
                        a.host + "/slow/app:v2", timeout=2)
        # Its slot is free soon after its deadline: a third call is admitted.
        admitted, last = None, None
        while time.monotonic() - start < 4:
            res, err = outcome(exists, d, other_ref, timeout=T_FAST)
            if err is None:
                admitted = time.monotonic() - start
                self.assertTrue(res.exists)
                break
            last = err
            self.assertEqual(err.code(), SC.RESOURCE_EXHAUSTED, err.details())
            time.sleep(0.1)
        line = None
        while line is None and time.monotonic() - start < 4:
            line = call_line(d, "Exists", a.host + "/slow/app:v2")
            time.sleep(0.05)
        fetching = len(c.requests(prefix="/token"))
        release.set()
        th.join(30)
        self.assertIsNotNone(admitted, "a third call was refused %.1fs after caller 1 started, "
                             "while caller 2 (2 s deadline) still held its slot: %s"
                             % (time.monotonic() - start, last and last.details()))
        self.assertIsNotNone(line, "regd had not ended caller 2's call 4 s after it started")
        self.assertIn(line[0], ("CANCELLED", "DEADLINE_EXCEEDED"), line)
        self.assertLess(line[1], 4, "regd ended caller 2's call after %.1fs" % line[1])
        self.assertEqual(fetching, 1, "caller 2 fetched a token of its own")
        self.assertIn("err", first, "caller 1 never ended")
        self.assertIsNone(first.get("err"), "caller 1 failed: %s"
                          % (first.get("err") and first["err"].details()))
        sys.stderr.write("[caller 2 ended %s in %.2fs; third call admitted at %.2fs] "
                         % (line[0], line[1], admitted))


# -- 15. token size ------------------------------------------------------------------------------

BIG_TOKEN = "A" * 1000000


class TokenSizeTest(HostileCase):
    """Review: a token service could hand out megabyte tokens, each cached
    (one per repository scope) until the daemon ran out of memory."""

    ROUNDS = 2
    CALLS = 80      # a round (each call fetches, and is refused, up to 3 tokens)
    THREADS = 12

    def test_megabyte_token_is_refused_and_memory_stays_flat(self):
        c = self.fake("fake-big-token")
        c.route("/token", Reply(200, json.dumps({"token": BIG_TOKEN, "expires_in": 86400}),
                                [("Content-Type", "application/json")]))
        a = self.fake("fake-big-token-registry")
        bearer = ScriptedBearer(a)
        bearer.challenge = 'Bearer realm="%s/token",service="fake"' % c.url
        bearer.accept = {BIG_TOKEN}
        sane = self.fake("fake-big-token-sane")
        sane_ref = serve_sane(sane)
        d = self.daemon(insecure_registries=[a.host, sane.host])
        idle = proc_status_kib(d.proc.pid, "VmRSS")

        _, err = outcome(exists, d, a.host + "/big/r0:v1")
        self.assertIsNotNone(err, "Exists succeeded with a 1,000,000-character token")
        self.assertNotIn(err.code(), BROKEN, err.details())
        self.assertIn("token", err.details().lower())
        self.assertRegex(err.details(), r"1000000|too (large|long)|at most",
                         "the failure does not say the token was refused")
        self.assertTrue(c.requests(prefix="/token"), "no token fetched (the test proves nothing)")
        self.assertEqual([r for r in a.requests() if r.header("Authorization")], [],
                         "the registry was sent the token")

        # Two rounds on distinct repositories (each its own token scope): regd
        # holds no token, so the second round leaves its memory where the first did.
        errors = {}
        lock = threading.Lock()
        rss = []
        start = time.monotonic()
        for rnd in range(self.ROUNDS):
            pending = iter(range(1 + rnd * self.CALLS, 1 + (rnd + 1) * self.CALLS))

            def worker():
                while True:
                    with lock:
                        i = next(pending, None)
                    if i is None:
                        return
                    _, e = outcome(exists, d, "%s/big/r%d:v1" % (a.host, i))
                    code = e.code().name if e is not None else "OK"
                    with lock:
                        errors[code] = errors.get(code, 0) + 1
            workers = [threading.Thread(target=worker, daemon=True) for _ in range(self.THREADS)]
            for w in workers:
                w.start()
            for w in workers:
                w.join(60)
            time.sleep(0.3)
            rss.append(proc_status_kib(d.proc.pid, "VmRSS"))
        took = time.monotonic() - start
        calls = self.ROUNDS * self.CALLS
        hwm = proc_status_kib(d.proc.pid, "VmHWM")
        sys.stderr.write("[%d calls in %.1fs, %s; VmRSS %s MiB (idle %d MiB), VmHWM %d MiB] "
                         % (calls, took, errors, "/".join(str(r >> 10) for r in rss),
                            idle >> 10, hwm >> 10))
        self.assertNotIn("OK", errors, errors)
        self.assertFalse(set(errors) & {code.name for code in BROKEN}, errors)
        self.assertEqual(sum(errors.values()), calls, "calls did not end: %s" % errors)
        fetched = len(c.requests(prefix="/token"))
        self.assertGreaterEqual(fetched, calls, "only %d token fetches" % fetched)
        limit = (100 + (64 if sanitized_binary() else 0)) << 10
        self.assertLess(rss[-1], limit, "regd holds %d MiB after %d megabyte tokens"
                        % (rss[-1] >> 10, calls))
        self.assertLess(rss[-1] - rss[0], 24 << 10,
                        "regd grew by %d MiB in a second round of %d megabyte tokens"
                        % ((rss[-1] - rss[0]) >> 10, self.CALLS))
        self.assertServing(d, sane_ref)


# -- 16. gRPC's own memory -----------------------------------------------------------------------

class GrpcMemoryTest(HostileCase):
    """Review: gRPC took 16 MiB messages on any number of calls at once, all
    buffered before regd's inline budget could refuse them."""

    CALLS = 48
    SIZE = 15 << 20

    def test_many_large_inline_writes_are_refused_without_buffering_them(self):
        f = self.fake("fake-grpc-memory")
        sane_ref = serve_sane(f)
        d = self.daemon(insecure_registries=[f.host])
        data = b"\0" * self.SIZE
        req = pb.WriteLayerRequest(repo=f.host + "/inline/app", layer=pb.BlobSource(data=data),
                                   retry=retry_config(pb, max_attempts=1))
        codes = {}
        lock = threading.Lock()
        go = threading.Event()
        # A connection each, all up before the first byte (gRPC shares one
        # between channels to a target unless told not to): the 48 requests
        # arrive side by side, not queued behind one connection's window.
        stubs = []
        for _ in range(self.CALLS):
            ch = grpc.insecure_channel(d.target, options=[("grpc.use_local_subchannel_pool", 1)])
            self.addCleanup(ch.close)
            grpc.channel_ready_future(ch).result(timeout=T)
            stubs.append(S.registry_pb2_grpc.RegistryStub(ch))

        def one(stub):
            go.wait()
            s = Stream(stub.WriteLayer(req, timeout=60))
            with lock:
                codes.setdefault(s.code, []).append(s.details[:200])
        threads = [threading.Thread(target=one, args=(stub,), daemon=True) for stub in stubs]
        for t in threads:
            t.start()
        start = time.monotonic()
        go.set()
        for t in threads:
            t.join(90)
        took = time.monotonic() - start
        hwm = proc_status_kib(d.proc.pid, "VmHWM")
        sys.stderr.write("[%d x %d MiB inline WriteLayers in %.1fs: %s; VmHWM %d MiB] "
                         % (self.CALLS, self.SIZE >> 20, took,
                            {k.name: len(v) for k, v in codes.items()}, hwm >> 10))
        self.assertEqual(sum(len(v) for v in codes.values()), self.CALLS, "calls did not end")
        self.assertEqual(set(codes) - {SC.RESOURCE_EXHAUSTED, SC.UNAVAILABLE}, set(),
                         "want RESOURCE_EXHAUSTED/UNAVAILABLE only: %r"
                         % {k.name: v[:2] for k, v in codes.items()})
        self.assertEqual(f.requests(prefix="/v2/inline/"), [], "an inline layer was uploaded")
        self.assertLess(hwm, 400 << 10, "regd peaked at %d MiB" % (hwm >> 10))
        self.assertServing(d, sane_ref)


if __name__ == "__main__":
    testing.main("test_hostile")
