#!/usr/bin/python3
"""Integration tests for regd's reads through authenticating registries.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_auth.py

Two registries: one with htpasswd basic auth, one with bearer-token auth backed
by an in-process token issuer (fixtures/token_issuer.py). Both are seeded with
the standard catalogue. regd gets credentials from $DOCKER_CONFIG/config.json:
  good   right credentials for both registries: reads work, as skopeo sees them
  wrong  wrong passwords: every RPC fails UNAUTHENTICATED
  none   no credentials at all: every RPC fails UNAUTHENTICATED
  eve    a token-issuer user whose tokens grant nothing: never success
and a fresh daemon makes 100 reads (60 concurrent) to count token requests.
"""

import hashlib
import json
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import cred_helper, images, stubs, testing, util  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.registry import Registry  # noqa: E402
from fixtures.token_issuer import TokenIssuer  # noqa: E402

S = stubs.load()
pb = S.registry_pb2
T = 20
NOT_FOUND_MSG = "image reference not found"

BASIC_USER = ("alice", "wonderland")
TOKEN_USER = ("bob", "builder")
EVE = ("eve", "eve-pass")  # authenticates with the issuer, granted nothing
REFRESH_TOKEN = "regd-test-refresh-token"  # docker "identitytoken" for bob

ENV = None
ISSUER = None
ANON_ISSUER = None  # no users: anyone gets a token; answers only "access_token", no expires_in
BASIC = None   # Registry
TOKEN = None   # Registry
ANON = None    # Registry behind ANON_ISSUER
CATS = {}      # "basic"/"token" -> images.Catalogue
DAEMONS = {}   # "good"/"wrong"/"none"/"eve" -> Daemon


def _grant(user, typ, name, actions):
    return [] if user == EVE[0] else actions


def setUpModule():
    global ENV, ISSUER, ANON_ISSUER, BASIC, TOKEN, ANON
    ENV = testing.Env(prefix="regd-auth-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    ISSUER = ENV.enter(TokenIssuer(os.path.join(ENV.workdir, "issuer"),
                                   users=dict([TOKEN_USER, EVE]), grant=_grant,
                                   refresh_tokens={REFRESH_TOKEN: TOKEN_USER[0]}))
    BASIC = ENV.enter(Registry(ENV.workdir, auth="basic", users=dict([BASIC_USER])),
                      "registry-basic")
    TOKEN = ENV.enter(Registry(ENV.workdir, auth="token", token_issuer=ISSUER), "registry-token")
    ANON_ISSUER = ENV.enter(TokenIssuer(os.path.join(ENV.workdir, "anon-issuer"), users=None,
                                        token_field="access_token", expires_in=None))
    ANON = ENV.enter(Registry(ENV.workdir, auth="token", token_issuer=ANON_ISSUER),
                     "registry-anon-token")
    CATS["basic"] = images.seed_all(ENV.workdir, BASIC.host, creds=BASIC_USER)
    CATS["token"] = images.seed_all(ENV.workdir, TOKEN.host, creds=TOKEN_USER)
    CATS["anon"] = images.seed_all(ENV.workdir, ANON.host)
    insecure = [BASIC.host, TOKEN.host, ANON.host]
    configs = {
        "good": {BASIC.host: BASIC_USER, TOKEN.host: TOKEN_USER},
        "wrong": {BASIC.host: (BASIC_USER[0], "not-the-password"),
                  TOKEN.host: (TOKEN_USER[0], "not-the-password")},
        "none": {},
        "eve": {TOKEN.host: EVE},
    }
    for name, auths in configs.items():
        DAEMONS[name] = ENV.enter(Daemon(ENV.workdir, insecure_registries=insecure, auths=auths),
                                  "regd-" + name)
    ISSUER.reset()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def platform(os_, arch, variant=""):
    return pb.Platform(os=os_, architecture=arch, variant=variant)


class Calls:
    """The read RPCs on one daemon."""

    def __init__(self, daemon):
        self.stub = daemon.stub

    def inspect(self, ref, plat=None, timeout=T):
        req = pb.InspectRequest(image_ref=ref)
        if plat is not None:
            req.platform.CopyFrom(plat)
        return self.stub.Inspect(req, timeout=timeout)

    def get_image(self, ref, plat=None, timeout=T):
        req = pb.GetImageRequest(image_ref=ref)
        if plat is not None:
            req.platform.CopyFrom(plat)
        return self.stub.GetImage(req, timeout=timeout)

    def exists(self, ref, timeout=T):
        return self.stub.Exists(pb.ExistsRequest(image_ref=ref), timeout=timeout)

    def get_descriptor(self, ref, timeout=T):
        return self.stub.GetDescriptor(pb.GetDescriptorRequest(image_ref=ref), timeout=timeout)

    def read_blob(self, repo, digest, offset=0, timeout=T):
        it = self.stub.ReadBlob(pb.ReadBlobRequest(repo=repo, digest=digest, offset=offset),
                                timeout=timeout)
        return b"".join(c.data for c in it)


# -- reads that must work -------------------------------------------------------------------

class _AuthReads:
    """Mixin: key reads through a registry; subclasses set MODE, CREDS and DAEMON."""
    MODE = None
    CREDS = None
    DAEMON = "good"

    @property
    def cat(self):
        return CATS[self.MODE]

    def calls(self):
        return Calls(DAEMONS[self.DAEMON])

    def test_inspect_single(self):
        img = self.cat.single
        r = self.calls().inspect(img.ref)
        sk = images.skopeo_inspect(img.ref, creds=self.CREDS)
        self.assertEqual(r.digest, sk["Digest"])
        self.assertEqual(list(r.layers), sk["Layers"])
        self.assertEqual(dict(r.labels), sk["Labels"])
        self.assertEqual(r.config, img.config.digest)
        self.assertEqual(r.media_type, images.OCI_MANIFEST)

    def test_inspect_index_and_platform(self):
        idx = self.cat.multi
        raw = images.skopeo_inspect_raw(idx.ref, creds=self.CREDS)
        r = self.calls().inspect(idx.ref)
        self.assertEqual(r.digest, sha(raw))
        self.assertEqual([m.digest for m in r.manifests],
                         [m["digest"] for m in json.loads(raw)["manifests"]])
        arm = idx.child("linux", "arm64", "v8")
        r = self.calls().inspect(idx.ref, platform("linux", "arm64", "v8"))
        self.assertEqual(r.digest, arm.digest)
        self.assertEqual(dict(r.labels), arm.labels)

    def test_get_image(self):
        for img in (self.cat.single, self.cat.docker):
            with self.subTest(img.repo):
                got = self.calls().get_image(img.ref)
                self.assertEqual(got.raw_manifest,
                                 images.skopeo_inspect_raw(img.ref, creds=self.CREDS))
                self.assertEqual(got.raw_config,
                                 images.skopeo_inspect_raw(img.ref, creds=self.CREDS, config=True))
                self.assertEqual(got.descriptor.digest, img.digest)
                self.assertEqual([l.digest for l in got.layers], [l.digest for l in img.layers])

    def test_exists(self):
        c = self.calls()
        self.assertTrue(c.exists(self.cat.single.ref).exists)
        self.assertTrue(c.exists(self.cat.multi.digest_ref).exists)
        self.assertFalse(c.exists("%s/%s:no-such-tag" % (self.cat.single.host,
                                                          self.cat.single.repo)).exists)
        self.assertFalse(c.exists("%s/test/no-such-repo:v1" % self.cat.single.host).exists)

    def test_get_descriptor(self):
        for obj in (self.cat.single, self.cat.multi, self.cat.docker):
            with self.subTest(obj.ref):
                raw = images.skopeo_inspect_raw(obj.ref, creds=self.CREDS)
                d = self.calls().get_descriptor(obj.ref)
                self.assertEqual(d.digest, sha(raw))
                self.assertEqual(d.size, len(raw))
                self.assertEqual(d.media_type, json.loads(raw)["mediaType"])

    def test_read_blob(self):
        img = self.cat.single
        repo = "%s/%s" % (img.host, img.repo)
        for blob in img.blobs():
            with self.subTest(blob.digest):
                self.assertEqual(self.calls().read_blob(repo, blob.digest), blob.data)
        big = max(img.layers, key=lambda b: b.size)
        self.assertEqual(self.calls().read_blob(repo, big.digest, offset=12345),
                         big.data[12345:])

    def test_absent_is_not_found(self):
        ref = "%s/%s:no-such-tag" % (self.cat.single.host, self.cat.single.repo)
        for fn in (self.calls().inspect, self.calls().get_image, self.calls().get_descriptor):
            with self.subTest(fn.__name__):
                e = self.assertRpcError(grpc.StatusCode.NOT_FOUND, fn, ref)
                self.assertIn(NOT_FOUND_MSG, e.details())


class BasicAuthReadTest(_AuthReads, testing.IntegrationCase):
    MODE = "basic"
    CREDS = BASIC_USER


class TokenAuthReadTest(_AuthReads, testing.IntegrationCase):
    MODE = "token"
    CREDS = TOKEN_USER


class AnonymousTokenReadTest(_AuthReads, testing.IntegrationCase):
    """A public registry: anonymous tokens, an `access_token` answer without expires_in."""
    MODE = "anon"
    CREDS = None
    DAEMON = "none"


# -- credentials that must fail ------------------------------------------------------------------

class RefusedTest(testing.IntegrationCase):
    def all_calls(self, daemon, cat):
        c = Calls(daemon)
        img = cat.single
        repo = "%s/%s" % (img.host, img.repo)
        return [
            ("Inspect", lambda: c.inspect(img.ref)),
            ("Inspect+platform", lambda: c.inspect(cat.multi.ref, platform("linux", "amd64"))),
            ("GetImage", lambda: c.get_image(img.ref)),
            ("Exists", lambda: c.exists(img.ref)),
            ("Exists(absent)", lambda: c.exists("%s/%s:no-such-tag" % (img.host, img.repo))),
            ("GetDescriptor", lambda: c.get_descriptor(img.ref)),
            ("ReadBlob", lambda: c.read_blob(repo, img.config.digest)),
        ]

    def check_refused(self, daemon_name, mode, codes=(grpc.StatusCode.UNAUTHENTICATED,)):
        for name, fn in self.all_calls(DAEMONS[daemon_name], CATS[mode]):
            with self.subTest(daemon=daemon_name, registry=mode, rpc=name):
                self.assertRpcError(codes, fn)
        # The daemon still serves, and the good daemon still reads.
        self.assertTrue(DAEMONS[daemon_name].alive())
        self.assertTrue(Calls(DAEMONS["good"]).exists(CATS[mode].single.ref).exists)

    def test_wrong_password_basic(self):
        self.check_refused("wrong", "basic")

    def test_wrong_password_token(self):
        self.check_refused("wrong", "token")

    def test_no_credentials_basic(self):
        self.check_refused("none", "basic")

    def test_no_credentials_token(self):
        self.check_refused("none", "token")

    def test_token_without_access(self):
        # eve gets tokens, but they grant no action; the registry keeps answering 401.
        self.check_refused("eve", "token", (grpc.StatusCode.UNAUTHENTICATED,
                                            grpc.StatusCode.PERMISSION_DENIED))


# -- other credential sources ---------------------------------------------------------------------

class CredentialSourcesTest(testing.IntegrationCase):
    """credHelpers, credsStore, identitytoken and registrytoken in the docker config."""

    def start(self, docker_config, env=None):
        d = Daemon(ENV.workdir, insecure_registries=[BASIC.host, TOKEN.host],
                   docker_config=docker_config, env=env)
        d.start()
        self.addCleanup(d.stop)
        ENV.logs.append(("regd-creds-%d" % d.n, d.stderr_path))
        return d

    def helper(self, creds):
        directory = os.path.join(ENV.workdir, "helper-%s" % self.id().rsplit(".", 1)[-1])
        bin_dir = cred_helper.install(directory, "regdtest", creds)
        return directory, {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}

    def assertReads(self, d, modes=("basic", "token")):
        c = Calls(d)
        for mode in modes:
            img = CATS[mode].single
            self.assertEqual(c.inspect(img.ref).digest, img.digest)
            self.assertEqual(c.read_blob("%s/%s" % (img.host, img.repo), img.config.digest),
                             img.config.data)

    def test_cred_helpers(self):
        directory, env = self.helper({BASIC.host: BASIC_USER, TOKEN.host: TOKEN_USER})
        d = self.start({"credHelpers": {BASIC.host: "regdtest", TOKEN.host: "regdtest"}}, env)
        self.assertReads(d)
        self.assertEqual(set(cred_helper.queries(directory, "regdtest")), {BASIC.host, TOKEN.host})
        # The helper printed each secret on its stderr; none reaches regd's log.
        log = d.log()
        for _, secret in (BASIC_USER, TOKEN_USER):
            self.assertNotIn(secret, log)
        self.assertNotIn("helper debug", log)

    def test_cred_helper_wins_over_auths(self):
        directory, env = self.helper({BASIC.host: BASIC_USER})
        wrong = util.basic_auth_header(BASIC_USER[0], "wrong")[len("Basic "):]
        d = self.start({"credHelpers": {BASIC.host: "regdtest"},
                        "auths": {BASIC.host: {"auth": wrong}}}, env)
        self.assertReads(d, ("basic",))

    def test_creds_store(self):
        directory, env = self.helper({BASIC.host: BASIC_USER, TOKEN.host: TOKEN_USER})
        d = self.start({"credsStore": "regdtest"}, env)
        self.assertReads(d)

    def test_creds_store_without_entry(self):
        directory, env = self.helper({})
        d = self.start({"credsStore": "regdtest"}, env)
        img = CATS["basic"].single
        self.assertRpcError(grpc.StatusCode.UNAUTHENTICATED, Calls(d).inspect, img.ref)
        self.assertTrue(cred_helper.queries(directory, "regdtest"))

    def test_identity_token(self):
        # docker's "identitytoken" is an OAuth2 refresh token: POST grant_type=refresh_token.
        d = self.start({"auths": {TOKEN.host: {"identitytoken": REFRESH_TOKEN}}})
        ISSUER.reset()
        self.assertReads(d, ("token",))
        reqs = ISSUER.requests()
        self.assertTrue(reqs, "no token request")
        self.assertTrue(all(r["grant_type"] == "refresh_token" and r["status"] == 200
                            for r in reqs), json.dumps(reqs))

    def test_registry_token(self):
        # docker's "registrytoken" is a bearer token sent as it is.
        img = CATS["token"].single
        jwt = ISSUER.make_token(TOKEN_USER[0], ["repository:%s:pull" % img.repo],
                                expires_in=600)
        d = self.start({"auths": {TOKEN.host: {"registrytoken": jwt}}})
        ISSUER.reset()
        self.assertReads(d, ("token",))
        self.assertEqual(ISSUER.requests(), [])


# -- token lifetime and rejection --------------------------------------------------------------

class TokenLifecycleTest(testing.IntegrationCase):
    """A registry of its own whose issuer hands out short-lived tokens."""
    LIFETIME = 6  # seconds

    @classmethod
    def setUpClass(cls):
        cls.issuer = ENV.enter(TokenIssuer(os.path.join(ENV.workdir, "short-issuer"),
                                           users=dict([TOKEN_USER]), expires_in=cls.LIFETIME))
        cls.reg = ENV.enter(Registry(ENV.workdir, auth="token", token_issuer=cls.issuer),
                            "registry-short-token")
        cls.img = images.build_image("lifecycle", {"org.example.t": "lifecycle"},
                                     layer_sizes=(1000,))
        images.push(cls.img, ENV.workdir, cls.reg.host, "test/lifecycle", "v1", creds=TOKEN_USER)

    def daemon(self):
        d = Daemon(ENV.workdir, insecure_registries=[self.reg.host],
                   auths={self.reg.host: TOKEN_USER})
        d.start()
        self.addCleanup(d.stop)
        ENV.logs.append(("regd-lifecycle-%d" % d.n, d.stderr_path))
        return d

    def test_token_is_fetched_again_after_expiry(self):
        c = Calls(self.daemon())
        self.issuer.reset()
        start = time.monotonic()
        for _ in range(5):
            self.assertTrue(c.exists(self.img.ref).exists)
        self.assertLess(time.monotonic() - start, 2, "machine too slow for this test")
        self.assertEqual(self.issuer.count_for_repo(self.img.repo), 1,
                         json.dumps(self.issuer.requests()))
        time.sleep(self.LIFETIME + 0.5 - (time.monotonic() - start))
        self.assertTrue(c.exists(self.img.ref).exists)
        self.assertEqual(self.issuer.count_for_repo(self.img.repo), 2,
                         "an expired token must be replaced: %s" % json.dumps(self.issuer.requests()))

    def test_rejected_token_is_replaced(self):
        # The registry restarts trusting a new issuer key: the cached token now
        # gets 401, and regd must fetch a new one and succeed.
        c = Calls(self.daemon())
        self.assertEqual(c.inspect(self.img.ref).digest, self.img.digest)
        self.issuer.reset()
        self.issuer.rotate_key()
        self.reg.restart()
        mark = self.reg.log_size()
        self.assertEqual(c.inspect(self.img.ref).digest, self.img.digest)
        statuses = [st for _, p, st in self.reg.access_log_since(mark)
                    if p.startswith("/v2/%s/" % self.img.repo)]
        self.assertIn(401, statuses, "the old token was not rejected; the test proves nothing")
        self.assertEqual(c.read_blob("%s/%s" % (self.reg.host, self.img.repo),
                                     self.img.config.digest), self.img.config.data)
        self.assertEqual(self.issuer.count_for_repo(self.img.repo), 1,
                         json.dumps(self.issuer.requests()))


# -- token caching ------------------------------------------------------------------------------------

class TokenCacheTest(testing.IntegrationCase):
    def test_100_reads_fetch_one_token(self):
        img = CATS["token"].single
        with Daemon(ENV.workdir, insecure_registries=[TOKEN.host],
                    auths={TOKEN.host: TOKEN_USER}) as d:
            ENV.logs.append(("regd-token-cache", d.stderr_path))
            ISSUER.reset()
            c = Calls(d)
            repo = "%s/%s" % (img.host, img.repo)
            ops = [lambda: self.assertTrue(c.exists(img.ref).exists),
                   lambda: self.assertEqual(c.inspect(img.ref).digest, img.digest),
                   lambda: self.assertEqual(c.get_descriptor(img.ref).digest, img.digest),
                   lambda: self.assertEqual(c.get_image(img.ref).raw_config, img.config.data),
                   lambda: self.assertEqual(c.read_blob(repo, img.config.digest),
                                            img.config.data)]
            errors = []
            barrier = threading.Barrier(10)

            def worker(i):
                try:
                    barrier.wait(timeout=10)
                    for j in range(6):
                        ops[(i + j) % len(ops)]()
                except BaseException as e:  # reported below
                    errors.append(e)

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual(errors, [])
            for j in range(40):  # 60 concurrent + 40 sequential = 100 calls
                ops[j % len(ops)]()
            log = ISSUER.requests()
            self.assertEqual(ISSUER.count_for_repo(img.repo), 1,
                             "token requests for %s: %s" % (img.repo, json.dumps(log)))
            self.assertEqual(ISSUER.count_for_repo(img.repo, issued_only=False), 1,
                             json.dumps(log))
            status, _, body = util.http_get("http://127.0.0.1:%d/stats" % ISSUER.port)
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["token_requests"], len(log))


if __name__ == "__main__":
    testing.main("test_auth")
