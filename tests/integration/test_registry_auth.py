#!/usr/bin/python3
"""Integration tests for per-call registry credentials (gRPC metadata x-registry-auth).

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_registry_auth.py [-k name]

Two registries, each also behind a fixtures/fault_proxy.py (to slow one
caller's upload down while another one calls):

  basic  docker-registry 2.8 with htpasswd (alice)
  token  docker-registry 2.8 with bearer tokens from fixtures/token_issuer.py
         (bob; eve authenticates but is granted nothing; a refresh token for
         bob as docker's "identitytoken")

Three daemons, none with a policy:

  none   no registry credentials of its own
  wrong  the daemon's docker config has wrong passwords for every registry
  right  the daemon's docker config has the right ones

x-registry-auth is base64url of a Docker AuthConfig JSON. The isolation
promises are checked with two callers whose credentials differ, one of them
wrong: a token fetched with caller 1's credentials is never used for caller 2
(the token issuer sees caller 2's own request), an upload made with caller 1's
never counts as EXISTED or SHARED for caller 2, and nothing caller 1 can read
is served to caller 2 (the registry answered 401 to everything caller 2 sent).
No password, token or header value ever shows in the daemon's log, an error
message or an event; a malformed header is INVALID_ARGUMENT without its value.
"""

import base64
import json
import os
import queue
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import images, stubs, testing, util  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.fault_proxy import FaultProxy  # noqa: E402
from fixtures.registry import Registry  # noqa: E402
from fixtures.token_issuer import TokenIssuer  # noqa: E402
from fixtures import callers  # noqa: E402
from fixtures.callers import Upload, retry  # noqa: E402,F401
from fixtures.uploads import (Stream, StreamChecks, call_async, random_bytes,  # noqa: E402
                              retry_config, sha256)

S = stubs.load()
pb = S.registry_pb2
T = 30
MiB = 1 << 20
CODE = grpc.StatusCode

BASIC_USER = ("alice", "pw-alice-b7e1c2d9f3a4")
TOKEN_USER = ("bob", "pw-bob-0e5a9c4d8f21")
EVE = ("eve", "pw-eve-6d3b1f8a2c70")  # the issuer knows her, but grants her nothing
WRONG = "pw-wrong-4c8e2a6f1b93"
REFRESH_TOKEN = "refresh-bob-91d2c7e5a3f8b604"
WRONG_REFRESH = "refresh-nobody-3e7a1c9d5b28f046"

ENV = None
ISSUER = None
ISSUED = []  # every JWT the issuer made (none may reach a log)
HEADERS_SENT = []  # every x-registry-auth value sent (none may reach a log)
TARGETS = {}
DAEMONS = {}


def _grant(user, typ, name, actions):
    return [] if user == EVE[0] else actions


class Target:
    """A registry as the tests use it: direct (reg.host) or through its proxy."""

    def __init__(self, name, reg, proxy, right, issuer=None):
        self.name = name
        self.reg = reg
        self.proxy = proxy
        self.right = right
        self.wrong = (right[0], WRONG)
        self.issuer = issuer
        self.seeded = None  # an image in seed/img:v1

    @property
    def host(self):
        return self.reg.host

    def repo(self, name):
        return "%s/%s" % (self.host, name)


def setUpModule():
    global ENV, ISSUER
    ENV = testing.Env(prefix="regd-regauth-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    ISSUER = ENV.enter(TokenIssuer(os.path.join(ENV.workdir, "issuer"),
                                   users=dict([TOKEN_USER, EVE]), grant=_grant,
                                   refresh_tokens={REFRESH_TOKEN: TOKEN_USER[0]}))
    make = ISSUER.make_token

    def recording_make_token(user, scopes, expires_in=None):
        tok = make(user, scopes, expires_in)
        ISSUED.append(tok)
        return tok
    ISSUER.make_token = recording_make_token

    basic = ENV.enter(Registry(ENV.workdir, auth="basic", users=dict([BASIC_USER])),
                      "registry-basic")
    token = ENV.enter(Registry(ENV.workdir, auth="token", token_issuer=ISSUER), "registry-token")
    TARGETS["basic"] = Target("basic", basic, ENV.enter(FaultProxy(basic.host)), BASIC_USER)
    TARGETS["token"] = Target("token", token, ENV.enter(FaultProxy(token.host)), TOKEN_USER,
                              ISSUER)
    for t in TARGETS.values():
        t.seeded = images.build_image("regauth-" + t.name, {"target": t.name},
                                      layer_sizes=(4000, 1000))
        images.push(t.seeded, ENV.workdir, t.host, "seed/img", "v1", creds=t.right)
    hosts = [h for t in TARGETS.values() for h in (t.host, t.proxy.host)]
    for name, pick in (("none", None), ("wrong", lambda t: t.wrong), ("right", lambda t: t.right)):
        auths = {}
        if pick is not None:
            for t in TARGETS.values():
                auths[t.host] = auths[t.proxy.host] = pick(t)
        DAEMONS[name] = ENV.enter(Daemon(ENV.workdir, insecure_registries=hosts, auths=auths),
                                  "regd-" + name)
    ISSUER.reset()


def secrets_list():
    out = [BASIC_USER[1], TOKEN_USER[1], EVE[1], WRONG, REFRESH_TOKEN, WRONG_REFRESH]
    for user, pw in (BASIC_USER, TOKEN_USER, EVE, (BASIC_USER[0], WRONG),
                     (TOKEN_USER[0], WRONG)):
        out.append(base64.b64encode(("%s:%s" % (user, pw)).encode()).decode())
    for tok in list(ISSUED):
        out.append(tok)
        out.append(tok.rsplit(".", 1)[-1])  # the signature alone
    out.extend(h for h in HEADERS_SENT if len(h) >= 12)
    return out


# -- x-registry-auth ------------------------------------------------------------------------

def encode(obj, pad=False, alphabet="url"):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    enc = (base64.urlsafe_b64encode if alphabet == "url" else base64.b64encode)(raw).decode()
    return enc if pad else enc.rstrip("=")


def xra(creds=None, pad=False, **fields):
    """x-registry-auth metadata: {"username","password"} from creds, plus `fields`."""
    obj = {}
    if creds is not None:
        obj.update(username=creds[0], password=creds[1])
    obj.update(fields)
    value = encode(obj, pad)
    HEADERS_SENT.append(value)
    return [("x-registry-auth", value)]


def raw_xra(value):
    HEADERS_SENT.append(value)
    return [("x-registry-auth", value)]


class Caller(callers.Caller):
    """One caller: a daemon (or its name in DAEMONS) and the metadata it sends."""

    def __init__(self, daemon, metadata=()):
        super().__init__(DAEMONS[daemon].stub if isinstance(daemon, str) else daemon.stub,
                         metadata=metadata)


_seq = [0]
_seq_lock = threading.Lock()


def uniq(name):
    with _seq_lock:
        _seq[0] += 1
        return "%s-%d" % (name, _seq[0])


class AuthCase(testing.IntegrationCase, StreamChecks):
    def tearDown(self):
        # x-registry-auth is for regd: never passed on to a registry as it is.
        for t in TARGETS.values():
            for e in t.proxy.log():
                for name, value in e.headers:
                    self.assertNotEqual(name.lower(), "x-registry-auth", e)
                    for h in HEADERS_SENT:
                        if len(h) >= 12:
                            self.assertNotIn(h, value, e)
        for name, d in DAEMONS.items():
            self.assertTrue(d.alive(), "regd-%s died:\n%s" % (name, d.log()))
            self.assertClean(util.read_tail(d.stderr_path, 10 << 20), "regd-%s's log" % name)

    def assertClean(self, text, what):
        for s in secrets_list():
            self.assertNotIn(s, text, "a secret (%s...) appears in %s:\n%s" % (s[:10], what, text))

    def assertRefused(self, fn, *args, codes=(CODE.UNAUTHENTICATED,)):
        err = self.assertRpcError(codes, fn, *args)
        self.assertClean(err.details(), "an error message")
        return err

    def assertStreamRefused(self, s, codes=(CODE.UNAUTHENTICATED,)):
        """A WriteLayer/PushImage stream that failed with no blob outcome at all."""
        self.assertIn(s.code, codes, s.summary())
        self.assertNotIn("result", s.kinds(), s.summary())
        self.assertNotIn("layer", s.kinds(), s.summary())
        self.assertClean(s.details + "\n" + s.summary(), "an error or event")
        for _, r in s.of("retry"):
            self.assertClean(r.error, "a retry event")

    def assertUploadRefused(self, up, codes=(CODE.UNAUTHENTICATED,)):
        """An UploadBlob call that failed with no result (no EXISTED, SHARED, ...)."""
        self.assertIn(up.code, codes, up.summary())
        self.assertNotIn("result", up.kinds(), up.summary())
        self.assertClean(up.summary(), "an UploadBlob error or event")

    def assertStreamClean(self, s):
        self.assertClean(s.details + "\n" + s.summary(), "an error or event")
        for _, r in s.of("retry"):
            self.assertClean(r.error, "a retry event")

    def assertNothingServed(self, reg, mark, what):
        """Every request that reached the registry since `mark` was refused (401)."""
        log = reg.access_log_since(mark)
        served = [e for e in log if e[2] != 401]
        self.assertEqual(served, [], "%s: the registry served requests: %s" % (what, log))


# -- the two registries ----------------------------------------------------------------------

class _PerCallCredentials:
    """Mixin: the cases on one registry; subclasses set TARGET."""
    TARGET = None

    @property
    def t(self):
        return TARGETS[self.TARGET]

    def seeded_ref(self):
        return "%s/seed/img:v1" % self.t.host

    def seeded_repo(self):
        return "%s/seed/img" % self.t.host

    def issuer_mark(self):
        return len(ISSUER.requests())

    def issuer_since(self, mark):
        return ISSUER.requests()[mark:]

    # -- right and wrong credentials, the daemon having none --------------------------

    def test_right_credentials_work_without_daemon_credentials(self):
        t = self.t
        c = Caller("none", xra(t.right))
        img = t.seeded
        self.assertTrue(c.exists(self.seeded_ref()))
        self.assertEqual(c.inspect(self.seeded_ref()).digest, img.digest)
        got = c.get_image(self.seeded_ref())
        self.assertEqual(got.raw_manifest, img.manifest.data)
        self.assertEqual(got.raw_config, img.config.data)
        self.assertEqual(c.get_descriptor(self.seeded_ref()).digest, img.digest)
        self.assertEqual(c.read_blob(self.seeded_repo(), img.layers[0].digest), img.layers[0].data)
        repo = t.repo(uniq("own/push"))
        data = random_bytes(300 * 1024, uniq("own"))
        self.assertLayerStream(c.write_layer(repo, data), len(data), "UPLOADED")
        self.assertLayerStream(c.write_layer(repo, data), len(data), "EXISTED")
        new = images.build_image(uniq("own-img"), {"by": "caller"}, layer_sizes=(2000, 900))
        p = c.push_image(repo + ":v1", new)
        res, _ = self.assertPushStream(p, {b.digest: b.size for b in new.blobs()})
        self.assertEqual(c.inspect(repo + ":v1").digest, res.descriptor.digest)
        self.assertEqual(c.read_blob(repo, sha256(data)), data)
        # Other spellings of the same credentials: padded base64url, standard
        # base64, docker's "auth" field.
        for label, md in (("padded", xra(t.right, pad=True)),
                          ("std base64", raw_xra(encode({"username": t.right[0],
                                                         "password": t.right[1]},
                                                        pad=True, alphabet="std"))),
                          ("auth field", xra(auth=base64.b64encode(
                              ("%s:%s" % t.right).encode()).decode()))):
            with self.subTest(label):
                self.assertEqual(Caller("none", md).inspect(self.seeded_ref()).digest, img.digest)
        # And without them, the daemon has nothing to offer.
        self.assertRefused(Caller("none").inspect, self.seeded_ref())

    def test_wrong_password_is_unauthenticated(self):
        t = self.t
        c = Caller("none", xra(t.wrong))
        mark = t.reg.log_size()
        for name, fn, args in self._reads(c):
            with self.subTest(rpc=name):
                self.assertRefused(fn, *args)
        self.assertStreamRefused(c.write_layer(t.repo(uniq("wrong")), b"w" * 5000))
        self.assertStreamRefused(c.push_image(t.repo(uniq("wrong")) + ":v1", t.seeded))
        self.assertNothingServed(t.reg, mark, "wrong password")

    def _reads(self, c):
        ref, repo, img = self.seeded_ref(), self.seeded_repo(), self.t.seeded
        return [("Exists", c.exists, (ref,)), ("Inspect", c.inspect, (ref,)),
                ("GetImage", c.get_image, (ref,)), ("GetDescriptor", c.get_descriptor, (ref,)),
                ("ReadBlob", c.read_blob, (repo, img.layers[0].digest)),
                ("ReadBlob config", c.read_blob, (repo, img.config.digest))]

    # -- (a) a cached token is not another caller's ----------------------------------

    def test_token_cached_for_one_caller_is_not_used_for_another(self):
        t = self.t
        one, two = Caller("none", xra(t.right)), Caller("none", xra(t.wrong))
        anon = Caller("none")
        repo = t.repo(uniq("cache/push"))
        data = random_bytes(4000, uniq("cache"))
        # Caller 1 reads and pushes: pull and push tokens (or accepted basic
        # credentials) for these repositories.
        self.assertEqual(one.inspect(self.seeded_ref()).digest, t.seeded.digest)
        self.assertEqual(one.read_blob(self.seeded_repo(), t.seeded.config.digest),
                         t.seeded.config.data)
        self.assertLayerStream(one.write_layer(repo, data), len(data), "UPLOADED")
        reg_mark, iss_mark = t.reg.log_size(), self.issuer_mark()
        # Right after, caller 2 asks for the same.
        for caller, label in ((two, "wrong password"), (anon, "no credentials")):
            with self.subTest(caller=label):
                self.assertRefused(caller.inspect, self.seeded_ref())
                self.assertRefused(caller.read_blob, self.seeded_repo(), t.seeded.config.digest)
                self.assertRefused(caller.exists, self.seeded_ref())
                self.assertStreamRefused(caller.write_layer(repo, random_bytes(4000, "other")))
                self.assertStreamRefused(caller.write_layer(repo, data))
        self.assertNothingServed(t.reg, reg_mark, "callers 2 and 3")
        if t.issuer is not None:
            reqs = self.issuer_since(iss_mark)
            mine = [r for r in reqs if r["user"] == t.wrong[0] and r["status"] == 401]
            self.assertTrue(mine, "caller 2 never asked the token service itself: %s" % reqs)
            self.assertFalse([r for r in reqs if r["status"] == 200 and r["user"]],
                             "a token was issued to someone during callers 2 and 3: %s" % reqs)
        # Caller 1 still works afterwards.
        self.assertEqual(one.inspect(self.seeded_ref()).digest, t.seeded.digest)

    # -- (b) EXISTED and SHARED need the caller's own accepted credentials -------------

    def test_existing_blob_is_not_existed_for_wrong_credentials(self):
        t = self.t
        one, two = Caller("none", xra(t.right)), Caller("none", xra(t.wrong))
        repo = t.repo(uniq("existed"))
        data = random_bytes(50 * 1024, uniq("existed"))
        self.assertLayerStream(one.write_layer(repo, data), len(data), "UPLOADED")
        mark = t.reg.log_size()
        self.assertStreamRefused(two.write_layer(repo, data))
        # Nor MOUNTED/EXISTED in another repository of the registry.
        self.assertStreamRefused(two.write_layer(t.repo(uniq("existed-other")), data))
        # Nor MOUNTED from caller 1's repository.
        self.assertStreamRefused(two.write_layer(t.repo(uniq("existed-mount")), data,
                                                 mount_from=repo))
        # Nor EXISTED to UploadBlob, which answers at once when no bytes are needed.
        self.assertUploadRefused(two.upload_blob(repo, data))
        self.assertUploadRefused(two.upload_blob(t.repo(uniq("existed-up")), data,
                                                 mount_from=repo))
        # Nor a push of an image whose blobs are all there already.
        self.assertStreamRefused(two.push_image(self.seeded_ref(), t.seeded))
        self.assertStreamRefused(Caller("none").write_layer(repo, data))
        self.assertUploadRefused(Caller("none").upload_blob(repo, data))
        self.assertNothingServed(t.reg, mark, "caller 2")
        # Caller 1 gets them all.
        self.assertLayerStream(one.write_layer(repo, data), len(data), "EXISTED")
        up = one.upload_blob(repo, data)
        self.assertEqual((up.code, up.outcome()), (CODE.OK, "EXISTED"), up.summary())
        self.assertNotIn("send_from", up.kinds())
        other = t.repo(uniq("existed-mount"))
        self.assertLayerStream(one.write_layer(other, data, mount_from=repo), len(data),
                               "MOUNTED")

    def test_digest_only_push_needs_the_callers_own_credentials(self):
        # PushImage blobs named by digest and size only (already in the registry):
        # regd checks each with a HEAD, with the caller's credentials.
        t = self.t
        one, two = Caller("none", xra(t.right)), Caller("none", xra(t.wrong))
        mark = t.reg.log_size()
        self.assertStreamRefused(two.push_image(self.seeded_ref(), t.seeded, digest_only=True))
        self.assertStreamRefused(Caller("none").push_image(self.seeded_ref(), t.seeded,
                                                           digest_only=True))
        self.assertNothingServed(t.reg, mark, "caller 2")
        p = one.push_image("%s/seed/img:again" % t.host, t.seeded, digest_only=True)
        self.assertPushStream(p, {b.digest: b.size for b in t.seeded.blobs()}, "EXISTED")

    def test_concurrent_upload_is_never_shared_with_wrong_credentials(self):
        t = self.t
        proxy = t.proxy
        size = 3 * MiB
        data = random_bytes(size, uniq("shared"))
        repo = "%s/%s" % (proxy.host, uniq("shared/blob"))
        one, twin = Caller("none", xra(t.right)), Caller("none", xra(t.right))
        two, anon = Caller("none", xra(t.wrong)), Caller("none")
        fault = proxy.add_fault("throttle", method="PUT", path=r"/blobs/uploads/", times=None,
                                rate=768 * 1024)  # about 4 s
        self.addCleanup(proxy.remove_fault, fault)
        proxy.reset_counters()
        leader = call_async(lambda: one.write_layer(repo, data, timeout=60))

        def put_in_flight():
            return [e for e in proxy.log(method="PUT") if e.finished is None and e.body_in > 0]
        util.wait_until(put_in_flight, 15, what="caller 1's PUT")
        # The same credentials share the upload (this shows the calls overlap)...
        follower = call_async(lambda: twin.write_layer(repo, data, timeout=60))
        time.sleep(0.3)
        # ...other ones never do.
        mark = t.reg.log_size()
        bad = [call_async(lambda c=c: c.write_layer(repo, data, timeout=60)) for c in (two, anon)]
        ups = [call_async(lambda c=c: c.upload_blob(repo, data, timeout=60)) for c in (two, anon)]
        for b in bad:
            b.join(30)
            self.assertIsNone(b.exc)
            self.assertStreamRefused(b.value)
        for u in ups:
            u.join(30)
            self.assertIsNone(u.exc)
            self.assertUploadRefused(u.value)
        self.assertTrue(put_in_flight(), "caller 1's upload ended before caller 2 was refused: "
                        "the test proves nothing")
        leader.join(60)
        follower.join(60)
        self.assertIsNone(leader.exc)
        self.assertIsNone(follower.exc)
        self.assertLayerStream(leader.value, size, "UPLOADED")
        self.assertLayerStream(follower.value, size, "SHARED")
        for s in (leader.value, follower.value):
            self.assertStreamClean(s)
        proxy.wait_idle()
        # All that callers 2 and 3 sent was refused; only caller 1's upload went up.
        log = t.reg.access_log_since(mark)
        self.assertEqual([e for e in log if e[2] not in (401, 201) or
                          (e[2] == 201 and e[0] != "PUT")], [], log)
        self.assertEqual(len([e for e in proxy.log(method="PUT") if e.status == 201]), 1,
                         proxy.log())

    # -- (c) nothing is served to a caller its own credentials would not get ----------

    def test_reads_of_another_callers_image_are_not_served(self):
        t = self.t
        one = Caller("none", xra(t.right))
        for name, fn, args in self._reads(one):
            with self.subTest(rpc=name, caller="right"):
                fn(*args)
        callers = [("wrong password", Caller("none", xra(t.wrong))),
                   ("no credentials", Caller("none"))]
        if t.issuer is not None:
            callers.append(("granted nothing", Caller("none", xra(EVE))))
        for label, c in callers:
            mark = t.reg.log_size()
            for name, fn, args in self._reads(c):
                with self.subTest(rpc=name, caller=label):
                    self.assertRefused(fn, *args, codes=(CODE.UNAUTHENTICATED,
                                                         CODE.PERMISSION_DENIED))
            self.assertNothingServed(t.reg, mark, label)

    # -- (d) precedence -----------------------------------------------------------------

    def test_call_credentials_beat_the_daemons(self):
        t = self.t
        ref, img = self.seeded_ref(), t.seeded
        # Controls: each daemon's own credentials.
        self.assertEqual(Caller("right").inspect(ref).digest, img.digest)
        self.assertRefused(Caller("wrong").inspect, ref)
        # The daemon's are wrong, the call's right: the call's win.
        c = Caller("wrong", xra(t.right))
        self.assertEqual(c.inspect(ref).digest, img.digest)
        self.assertEqual(c.read_blob(self.seeded_repo(), img.config.digest), img.config.data)
        repo = t.repo(uniq("precedence"))
        data = random_bytes(3000, uniq("precedence"))
        self.assertLayerStream(c.write_layer(repo, data), len(data), "UPLOADED")
        # The daemon's are right, the call's wrong: refused, no fallback.
        w = Caller("right", xra(t.wrong))
        mark = t.reg.log_size()
        for name, fn, args in self._reads(w):
            with self.subTest(rpc=name):
                self.assertRefused(fn, *args)
        self.assertStreamRefused(w.write_layer(repo, data))
        self.assertStreamRefused(w.write_layer(repo, random_bytes(3000, "another")))
        self.assertNothingServed(t.reg, mark, "wrong call credentials on the right daemon")

    def test_serveraddress_limits_the_credentials_to_one_registry(self):
        t = self.t
        ref, img = self.seeded_ref(), t.seeded
        # Meant for another registry: not used here (the daemon has none).
        for other in ("other.example.com", "127.0.0.1:1", t.proxy.host):
            with self.subTest(serveraddress=other):
                self.assertRefused(Caller("none", xra(t.right, serveraddress=other)).inspect, ref)
        # Wrong ones meant for another registry do not hide the daemon's right ones.
        c = Caller("right", xra(t.wrong, serveraddress="other.example.com"))
        self.assertEqual(c.inspect(ref).digest, img.digest)
        self.assertLayerStream(c.write_layer(t.repo(uniq("srvaddr")), b"s" * 2000), 2000)
        # Naming this registry, in docker's spellings.
        for this in (t.host, "http://%s" % t.host, "https://%s/v2/" % t.host):
            with self.subTest(serveraddress=this):
                self.assertEqual(Caller("none", xra(t.right, serveraddress=this))
                                 .inspect(ref).digest, img.digest)
                self.assertRefused(Caller("right", xra(t.wrong, serveraddress=this)).inspect, ref)


class BasicRegistryTest(_PerCallCredentials, AuthCase):
    TARGET = "basic"


class TokenRegistryTest(_PerCallCredentials, AuthCase):
    TARGET = "token"

    def test_identity_token_and_registry_token(self):
        t = self.t
        ref, img = self.seeded_ref(), t.seeded
        mark = self.issuer_mark()
        self.assertEqual(Caller("none", xra(identitytoken=REFRESH_TOKEN)).inspect(ref).digest,
                         img.digest)
        reqs = self.issuer_since(mark)
        self.assertTrue(reqs and all(r["grant_type"] == "refresh_token" for r in reqs), reqs)
        # A wrong refresh token right after the good one: its own request, refused.
        mark = self.issuer_mark()
        self.assertRefused(Caller("none", xra(identitytoken=WRONG_REFRESH)).inspect, ref)
        reqs = self.issuer_since(mark)
        self.assertTrue([r for r in reqs if r["grant_type"] == "refresh_token" and
                         r["status"] == 401], reqs)
        # A registry token is sent as it is: no token request at all.
        jwt = ISSUER.make_token(TOKEN_USER[0], ["repository:seed/img:pull"], expires_in=600)
        mark = self.issuer_mark()
        good = Caller("none", xra(registrytoken=jwt))
        self.assertEqual(good.inspect(ref).digest, img.digest)
        self.assertEqual(good.read_blob(self.seeded_repo(), img.config.digest), img.config.data)
        self.assertEqual(self.issuer_since(mark), [])
        # A forged one right after the good one is refused by the registry.
        head, claims, _ = jwt.split(".")
        forged = "%s.%s.%s" % (head, claims, base64.urlsafe_b64encode(b"x" * 256)
                               .decode().rstrip("="))
        HEADERS_SENT.append(forged)
        reg_mark = t.reg.log_size()
        bad = Caller("none", xra(registrytoken=forged))
        self.assertRefused(bad.inspect, ref)
        self.assertRefused(bad.read_blob, self.seeded_repo(), img.config.digest)
        self.assertNothingServed(t.reg, reg_mark, "a forged registry token")
        # The registry token's scope is pull on seed/img only.
        self.assertRefused(good.inspect, "%s/other/repo:v1" % t.host,
                           codes=(CODE.UNAUTHENTICATED, CODE.PERMISSION_DENIED))


# -- (e) and (f): secrets and malformed headers ----------------------------------------------

class MalformedHeaderTest(AuthCase):
    SECRET = "s3cret-value-7f2e9a1c"

    def cases(self):
        s = self.SECRET
        return [
            ("not base64", "%%not*base64 " + s),
            ("base64 of text", encode(("hello " + s).encode())),
            ("a JSON string", encode(json.dumps(s).encode())),
            ("a JSON array", encode(json.dumps([s]).encode())),
            ("JSON null", encode(b"null")),
            ("unknown key", encode({"username": "alice", "password": s, "passwd": s})),
            ("empty object", encode({})),
            ("empty strings", encode({"username": "", "password": ""})),
            ("number as password", encode(b'{"username": "alice", "password": 12345678}')),
            ("object as password", encode({"username": "alice", "password": {"v": s}})),
            ("auth not base64", encode({"auth": "!!" + s})),
            ("serveraddress with a space", encode({"username": "alice", "password": s,
                                                   "serveraddress": "a b.example.com"})),
            ("truncated JSON", encode(('{"username": "alice", "password": "%s"' % s).encode())),
        ]

    def test_malformed_header_is_invalid_argument_without_its_value(self):
        basic = TARGETS["basic"]
        ref = "%s/seed/img:v1" % basic.host
        repo = "%s/seed/img" % basic.host
        mark = basic.reg.log_size()
        for label, value in self.cases():
            for dname in ("none", "right"):
                c = Caller(dname, raw_xra(value))
                with self.subTest(label, daemon=dname):
                    for fn, args in ((c.inspect, (ref,)), (c.exists, (ref,)),
                                     (c.read_blob, (repo, basic.seeded.config.digest))):
                        err = self.assertRpcError(CODE.INVALID_ARGUMENT, fn, *args)
                        self.assertIn("x-registry-auth", err.details())
                        self.assertNotIn(self.SECRET, err.details())
                        self.assertNotIn(value[:12], err.details())
                        self.assertClean(err.details(), "an error message")
                    s = c.write_layer(repo, b"m" * 100)
                    self.assertEqual(s.code, CODE.INVALID_ARGUMENT, s.summary())
                    self.assertNotIn(self.SECRET, s.details)
                    self.assertEqual(s.events, [])
        self.assertEqual(basic.reg.access_log_since(mark), [],
                         "a call with a malformed x-registry-auth reached the registry")
        for d in DAEMONS.values():
            self.assertNotIn(self.SECRET, d.log())

    def test_empty_header_is_invalid_argument(self):
        # An x-registry-auth that is there but empty is malformed; it must not
        # quietly mean "no credentials of my own" (the daemon's would be used).
        basic = TARGETS["basic"]
        ref = "%s/seed/img:v1" % basic.host
        mark = basic.reg.log_size()
        err = self.assertRpcError(CODE.INVALID_ARGUMENT, Caller("right", [("x-registry-auth", "")])
                                  .inspect, ref)
        self.assertIn("x-registry-auth", err.details())
        self.assertEqual(basic.reg.access_log_since(mark), [])


class SecretsTest(AuthCase):
    def test_no_secret_in_logs_errors_or_events(self):
        """Calls that fail in every way credentials can fail; then the logs.
        (Each test's tearDown greps the daemons' logs too.)"""
        texts = []
        for t in TARGETS.values():
            ref = "%s/seed/img:v1" % t.host
            for dname, md in (("none", xra(t.wrong)), ("right", xra(t.wrong)),
                              ("wrong", []), ("none", xra(t.right, serveraddress="x.example")),
                              ("none", xra(identitytoken=WRONG_REFRESH)),
                              ("none", xra(registrytoken="forged-" + WRONG)),
                              ("none", xra(auth=base64.b64encode(
                                  ("%s:%s" % t.wrong).encode()).decode()))):
                c = Caller(dname, md)
                for fn, args in ((c.inspect, (ref,)), (c.get_image, (ref,)),
                                 (c.read_blob, ("%s/seed/img" % t.host, t.seeded.config.digest))):
                    try:
                        fn(*args)
                    except grpc.RpcError as e:
                        texts.append(e.details() or "")
                s = c.write_layer("%s/%s" % (t.host, uniq("secrets")), b"e" * 3000)
                texts.append(s.details + "\n" + s.summary())
                texts.extend(r.error for _, r in s.of("retry"))
                s = c.push_image("%s/%s:v1" % (t.proxy.host, uniq("secrets")), t.seeded)
                texts.append(s.details + "\n" + s.summary())
                texts.extend(r.error for _, r in s.of("retry"))
        self.assertGreater(len(texts), 20)
        for x in texts:
            self.assertClean(x, "an error or event")
        self.assertTrue(ISSUED, "the issuer made no token: the token checks prove nothing")
        for name, d in DAEMONS.items():
            log = util.read_tail(d.stderr_path, 10 << 20)
            self.assertClean(log, "regd-%s's log" % name)
            for s in (TOKEN_USER[1], BASIC_USER[1], WRONG, "Bearer ey", "Basic "):
                self.assertNotIn(s, log)


if __name__ == "__main__":
    testing.main("test_registry_auth")
