#!/usr/bin/python3
"""Integration tests for the tenant policy (--policy).

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_policy.py [-k name]

Registries: PLAIN (no auth), BASIC (htpasswd) and PROXY (fixtures/fault_proxy.py
in front of PLAIN, to make one tenant's call slow). Three daemons:

  D     plain gRPC on 127.0.0.1, tenants named by bearer tokens
        (`authorization: Bearer <token>`); the daemon has no registry
        credentials of its own.
  DOWN  the same policy, and the daemon's own (right) credentials for BASIC
        (whose tenant docker_config comes first).
  DT    mTLS (--tls_cert/--tls_key/--tls_client_ca), tenants named by the
        client certificate's CN or URI SAN, one by a bearer token.

What is checked: pushes and reads inside a tenant's prefixes work; outside them
PERMISSION_DENIED with nothing sent to the registry (its access log); unknown
callers UNAUTHENTICATED; prefixes match whole segments and the port; a tenant
over max_concurrent_calls gets RESOURCE_EXHAUSTED while another one is served
at once; the tenant's docker_config supplies its registry credentials; every
call's log line names its tenant and no token or password is ever logged; a
bad policy file stops the daemon at start with exit 2 and a message naming
the problem. Also: UploadBlob follows the policy, a mount_from the tenant may
not read is never mounted from (nor a concurrent upload of the same blob by
another tenant), a cancelled call frees its tenant's slot, and a tenant's
bearer token is never passed on to a registry (the proxy sees every header).
"""

import base64
import hashlib
import json
import os
import queue
import re
import secrets
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import images, stubs, testing, util  # noqa: E402
from fixtures.callers import Caller, Upload, retry  # noqa: E402,F401
from fixtures.certs import make_ca, make_leaf  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.fault_proxy import FaultProxy  # noqa: E402
from fixtures.registry import Registry  # noqa: E402
from fixtures.uploads import (Stream, StreamChecks, call_async, random_bytes,  # noqa: E402
                              retry_config, sha256)

S = stubs.load()
pb = S.registry_pb2
T = 30
MiB = 1 << 20
CODE = grpc.StatusCode

BASIC_USER = ("alice", "pw-alice-5c1d7e0b93")
WRONG_PASSWORD = "pw-wrong-8d2f61aa04"

# Bearer tokens naming tenants; the policy file holds their SHA-256 only.
TOKENS = {name: "tok-%s-%s" % (name, secrets.token_hex(16)) for name in
          ("team-a", "team-b", "reader", "team-l", "basic-creds", "basic-wrong",
           "basic-none", "team-e")}
UNKNOWN_TOKEN = "tok-unknown-" + secrets.token_hex(16)

# Client certificate identities (DT).
CN_TENANT = "team-c.clients.example.com"
SAN_TENANT = "spiffe://example.org/team-d"

ENV = None
PLAIN = None
BASIC = None
PROXY = None
D = None
DOWN = None
DT = None
CERTS = {}
SEEDED = None    # an image in PLAIN/team-a/seeded:v1 (pushed with skopeo)
SEEDED_B = None  # an image in PLAIN/team-b/seeded:v1
BASIC_IMG = None  # an image in BASIC/shared/img:v1


def token_hash(tok):
    return hashlib.sha256(tok.encode()).hexdigest()


def secrets_list():
    """Every string that must never reach a log, an error or an event."""
    out = list(TOKENS.values()) + [UNKNOWN_TOKEN, BASIC_USER[1], WRONG_PASSWORD]
    out += [token_hash(t) for t in TOKENS.values()]
    for pw in (BASIC_USER[1], WRONG_PASSWORD):
        out.append(base64.b64encode(("%s:%s" % (BASIC_USER[0], pw)).encode()).decode())
    return out


# -- certificates ------------------------------------------------------------------------

def read(path):
    with open(path, "rb") as f:
        return f.read()


# -- setup -------------------------------------------------------------------------------

def write_json(name, obj):
    path = os.path.join(ENV.workdir, name)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def docker_config(host, user, password):
    return {"auths": {host: {"auth": base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode()}}}


def files_dir(name):
    d = os.path.join(ENV.workdir, "files-" + name)
    os.makedirs(d, exist_ok=True)
    return d


def token_policy():
    good = write_json("tenant-basic-creds.json", docker_config(BASIC.host, *BASIC_USER))
    wrong = write_json("tenant-basic-wrong.json",
                       docker_config(BASIC.host, BASIC_USER[0], WRONG_PASSWORD))
    rw = ["pull", "push"]

    def tenant(name, allow, **extra):
        t = {"name": name, "token_sha256": token_hash(TOKENS[name]), "allow": allow}
        t.update(extra)
        return t

    return {"tenants": [
        tenant("team-a", [{"prefix": PLAIN.host + "/team-a", "actions": rw},
                          {"prefix": PROXY.host + "/team-a/", "actions": rw},
                          {"prefix": "LocalHost:%d/mixed" % PLAIN.port, "actions": ["pull"]}],
               allowed_paths=[files_dir("a")]),
        tenant("team-b", [{"prefix": PLAIN.host + "/team-b/", "actions": rw},
                          {"prefix": PROXY.host + "/team-b/", "actions": rw}]),
        # Upper-case hex: the hash is compared case-insensitively.
        dict(tenant("reader", [{"prefix": PLAIN.host + "/team-a/", "actions": ["pull"]}]),
             token_sha256=token_hash(TOKENS["reader"]).upper()),
        tenant("team-l", [{"prefix": PROXY.host + "/team-l", "actions": rw},
                          {"prefix": PLAIN.host + "/team-l", "actions": rw}],
               max_concurrent_calls=1),
        tenant("basic-creds", [{"prefix": BASIC.host, "actions": rw}], docker_config=good),
        tenant("basic-wrong", [{"prefix": BASIC.host + "/", "actions": rw}],
               docker_config=wrong),
        tenant("basic-none", [{"prefix": BASIC.host, "actions": rw}]),
    ]}


def mtls_policy():
    rw = ["pull", "push"]
    return {"tenants": [
        {"name": "team-c", "client_cert_cn": CN_TENANT,
         "allow": [{"prefix": PLAIN.host + "/team-c", "actions": rw}]},
        {"name": "team-d", "client_cert_uri_san": SAN_TENANT,
         "allow": [{"prefix": PLAIN.host + "/team-d", "actions": rw}]},
        {"name": "team-e", "token_sha256": token_hash(TOKENS["team-e"]),
         "allow": [{"prefix": PLAIN.host + "/team-e", "actions": rw}]},
    ]}


def setUpModule():
    global ENV, PLAIN, BASIC, PROXY, D, DOWN, DT, SEEDED, SEEDED_B, BASIC_IMG
    ENV = testing.Env(prefix="regd-policy-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    PLAIN = ENV.enter(Registry(ENV.workdir, auth="none"), "registry-plain")
    BASIC = ENV.enter(Registry(ENV.workdir, auth="basic", users=dict([BASIC_USER])),
                      "registry-basic")
    PROXY = ENV.enter(FaultProxy(PLAIN.host))
    insecure = [PLAIN.host, BASIC.host, PROXY.host, "localhost:%d" % PLAIN.port]

    SEEDED = images.build_image("policy-a", {"team": "a"}, layer_sizes=(3000,))
    images.push(SEEDED, ENV.workdir, PLAIN.host, "team-a/seeded", "v1")
    SEEDED_B = images.build_image("policy-b", {"team": "b"}, layer_sizes=(3000,))
    images.push(SEEDED_B, ENV.workdir, PLAIN.host, "team-b/seeded", "v1")
    BASIC_IMG = images.build_image("policy-basic", {"team": "basic"}, layer_sizes=(3000,))
    images.push(BASIC_IMG, ENV.workdir, BASIC.host, "shared/img", "v1", creds=BASIC_USER)

    policy = write_json("policy-token.json", token_policy())
    D = ENV.enter(Daemon(ENV.workdir, insecure_registries=insecure, auths={},
                         extra_args=["--policy=" + policy]), "regd")
    DOWN = ENV.enter(Daemon(ENV.workdir, insecure_registries=insecure,
                            auths={BASIC.host: BASIC_USER},
                            extra_args=["--policy=" + policy]), "regd-own-creds")

    cdir = os.path.join(ENV.workdir, "certs")
    os.makedirs(cdir)
    ca = make_ca(cdir, "tenants")
    CERTS["ca"] = ca
    CERTS["server"] = make_leaf(cdir, "server", ca, "regd", "IP:127.0.0.1")
    CERTS["cn"] = make_leaf(cdir, "cn", ca, CN_TENANT, "DNS:" + CN_TENANT)
    CERTS["san"] = make_leaf(cdir, "san", ca, "workload-7", "URI:" + SAN_TENANT)
    CERTS["stranger"] = make_leaf(cdir, "stranger", ca, "nobody.clients.example.com",
                                  "URI:spiffe://example.org/nobody")
    # CN of team-c, URI SAN of team-d: the CN is tried first.
    CERTS["both"] = make_leaf(cdir, "both", ca, CN_TENANT, "URI:" + SAN_TENANT)
    mpolicy = write_json("policy-mtls.json", mtls_policy())
    dt = Daemon(ENV.workdir, insecure_registries=insecure, auths={},
                extra_args=["--policy=" + mpolicy, "--tls_cert=" + CERTS["server"][0],
                            "--tls_key=" + CERTS["server"][1],
                            "--tls_client_ca=" + ca[0], "--shutdown_grace=2s"])
    dt.spawn()
    ENV.callback(dt.kill)
    ENV.logs.append(("regd-mtls", dt.stderr_path))
    dt._wait_ready()
    DT = dt


# -- calls -------------------------------------------------------------------------------

def tenant(name, daemon=None):
    return Caller((daemon or D).stub, TOKENS[name])


_seq = [0]

# "I 2026-...Z Exists [team-a] 127.0.0.1:1/team-a/x:v1 OK in 2ms"
CALL_LINE = re.compile(r"^I \S+ (Inspect|GetImage|Exists|GetDescriptor|ReadBlob|WriteLayer|"
                       r"PushImage|PushIndex|UploadBlob) (\[[^\]]+\] )?\S+ ([A-Z_]+) ")


def uniq(name):
    _seq[0] += 1
    return "%s-%d" % (name, _seq[0])


class PolicyCase(testing.IntegrationCase, StreamChecks):
    def setUp(self):
        self.log_marks = {d.n: os.path.getsize(d.stderr_path) for d in self.daemons()}

    def daemons(self):
        return [d for d in (D, DOWN, DT) if d is not None]

    def tearDown(self):
        # The tenant's bearer token is for regd only: never sent on to a registry.
        for e in PROXY.log():
            for name, value in e.headers:
                self.assertClean("%s: %s" % (name, value), "a request to the registry")
        for d in self.daemons():
            self.assertTrue(d.alive(), "regd died:\n" + d.log())
            self.assertClean(util.read_tail(d.stderr_path, 10 << 20), "the daemon's log")
            # Every call this test made is logged with its tenant: in brackets once
            # admitted, in the message when its tenant was over its limit; only a
            # caller that matched no tenant has none.
            for line in self.new_log(d).splitlines():
                m = CALL_LINE.match(line)
                if m is None:
                    continue
                if m.group(2):
                    continue
                if m.group(3) == "UNAUTHENTICATED":
                    self.assertIn("no tenant", line)
                elif m.group(3) == "RESOURCE_EXHAUSTED":
                    self.assertRegex(line, r'tenant \\"[a-z-]+\\"', line)
                else:
                    self.fail("a call logged without its tenant: %s" % line)

    def assertClean(self, text, what):
        for s in secrets_list():
            self.assertNotIn(s, text, "a secret (%s...) appears in %s" % (s[:8], what))

    def new_log(self, d):
        with open(d.stderr_path, "rb") as f:
            f.seek(self.log_marks[d.n])
            return f.read().decode("utf-8", "replace")

    def assertLogged(self, d, method, tenant_name, subject, status="OK"):
        """The daemon logged `method [tenant] subject STATUS` since setUp."""
        who = " [%s]" % tenant_name if tenant_name else ""
        want = "%s%s %s %s" % (method, who, subject, status)

        def found():
            return any(want in line for line in self.new_log(d).splitlines())
        try:
            util.wait_until(found, 3, what="log line %r" % want)
        except TimeoutError:
            self.fail("no log line %r in:\n%s" % (want, self.new_log(d)))

    def assertDenied(self, code, fn, *args, words=()):
        err = self.assertRpcError(code, fn, *args)
        for w in words:
            self.assertIn(w, err.details())
        self.assertClean(err.details(), "an error message")
        return err

    def assertUploadFails(self, up, code, words=()):
        self.assertEqual(up.code, code, up.summary())
        for w in words:
            self.assertIn(w, up.details, up.summary())
        self.assertNotIn("result", up.kinds(), up.summary())
        self.assertClean(up.summary(), "an UploadBlob error or event")

    def assertStreamFails(self, s, code, words=()):
        self.assertEqual(s.code, code, s.summary())
        for w in words:
            self.assertIn(w, s.details, s.summary())
        self.assertNotIn("result", s.kinds(), s.summary())
        self.assertClean(s.details + s.summary(), "an error or event")


# -- bearer-token tenants --------------------------------------------------------------------

class TokenTenantTest(PolicyCase):
    def test_tenant_pushes_and_reads_under_its_prefix(self):
        a = tenant("team-a")
        repo = "%s/team-a/%s" % (PLAIN.host, uniq("app"))
        data = random_bytes(200 * 1024, uniq("a-layer"))
        s = a.write_layer(repo, data)
        self.assertLayerStream(s, len(data), "UPLOADED")
        self.assertLogged(D, "WriteLayer", "team-a", repo)
        img = images.build_image(uniq("a-img"), {"k": "v"}, layer_sizes=(1500, 700))
        p = a.push_image(repo + ":v1", img)
        res, _ = self.assertPushStream(p, {b.digest: b.size for b in img.blobs()})
        self.assertLogged(D, "PushImage", "team-a", repo + ":v1")
        # Really in the registry, and readable by the tenant.
        status, _, _ = util.http_get("%s/v2/%s/manifests/v1" % (
            PLAIN.url, repo.split("/", 1)[1]), method="HEAD",
            headers={"Accept": images.OCI_MANIFEST})
        self.assertEqual(status, 200)
        self.assertEqual(a.inspect(repo + ":v1").digest, res.descriptor.digest)
        self.assertEqual(a.read_blob(repo, sha256(data)), data)
        self.assertLogged(D, "Inspect", "team-a", repo + ":v1")
        self.assertLogged(D, "ReadBlob", "team-a", "%s@%s" % (repo, sha256(data)))
        # The prefix with no trailing "/" also covers the repository of its own name,
        # and anything deeper.
        for r in ("%s/team-a" % PLAIN.host, "%s/team-a/deep/er/repo" % PLAIN.host):
            with self.subTest(repo=r):
                self.assertLayerStream(a.write_layer(r, data), len(data))

    def test_other_tenants_prefix_is_denied_and_nothing_reaches_the_registry(self):
        a = tenant("team-a")
        repo = "%s/team-b/%s" % (PLAIN.host, uniq("app"))
        img = images.build_image(uniq("deny"), {"k": "v"}, layer_sizes=(500,))
        mark = PLAIN.log_size()
        s = a.write_layer(repo, random_bytes(1000, "deny"))
        self.assertStreamFails(s, CODE.PERMISSION_DENIED,
                               ['tenant "team-a" may not push to', repo])
        p = a.push_image(repo + ":v1", img)
        self.assertStreamFails(p, CODE.PERMISSION_DENIED, ['tenant "team-a"', "push"])
        # Reads of B's repositories too.
        sref = "%s/team-b/seeded:v1" % PLAIN.host
        srepo = "%s/team-b/seeded" % PLAIN.host
        for name, fn, args in (("Exists", a.exists, (sref,)), ("Inspect", a.inspect, (sref,)),
                               ("GetImage", a.get_image, (sref,)),
                               ("GetDescriptor", a.get_descriptor, (sref,)),
                               ("ReadBlob", a.read_blob, (srepo, SEEDED_B.config.digest)),
                               ("PushIndex", a.push_index, (repo + ":idx", sref))):
            with self.subTest(rpc=name):
                self.assertDenied(CODE.PERMISSION_DENIED, fn, *args,
                                  words=['tenant "team-a" may not'])
        self.assertEqual(PLAIN.access_log_since(mark), [],
                         "a denied call reached the registry")
        self.assertLogged(D, "WriteLayer", "team-a", repo, "PERMISSION_DENIED")
        self.assertLogged(D, "Exists", "team-a", sref, "PERMISSION_DENIED")
        # B itself is served there.
        b = tenant("team-b")
        self.assertTrue(b.exists(sref))
        self.assertLayerStream(b.write_layer(repo, random_bytes(1000, "deny")), 1000)
        self.assertLogged(D, "Exists", "team-b", sref)

    def test_unknown_or_missing_token_is_unauthenticated(self):
        ref = "%s/team-a/seeded:v1" % PLAIN.host
        repo = "%s/team-a/%s" % (PLAIN.host, uniq("anon"))
        callers = {
            "unknown token": Caller(D.stub, UNKNOWN_TOKEN),
            "no token": Caller(D.stub),
            "empty bearer": Caller(D.stub, metadata=[("authorization", "Bearer ")]),
            "basic scheme": Caller(D.stub, metadata=[("authorization",
                                                      "Basic " + TOKENS["team-a"])]),
            "token without scheme": Caller(D.stub, metadata=[("authorization",
                                                              TOKENS["team-a"])]),
            "hash as token": Caller(D.stub, token_hash(TOKENS["team-a"])),
            "token in other case": Caller(D.stub, TOKENS["team-a"].upper()),
        }
        mark = PLAIN.log_size()
        for label, c in callers.items():
            with self.subTest(caller=label):
                err = self.assertDenied(CODE.UNAUTHENTICATED, c.exists, ref)
                self.assertIn("no tenant", err.details())
                self.assertDenied(CODE.UNAUTHENTICATED, c.read_blob, repo,
                                  SEEDED.config.digest)
                self.assertStreamFails(c.write_layer(repo, b"x" * 100), CODE.UNAUTHENTICATED)
        self.assertEqual(PLAIN.access_log_since(mark), [])
        self.assertLogged(D, "Exists", "", ref, "UNAUTHENTICATED")

    def test_pull_only_tenant(self):
        r = tenant("reader")  # its hash is upper-case in the policy file
        ref = "%s/team-a/seeded:v1" % PLAIN.host
        repo = "%s/team-a/seeded" % PLAIN.host
        self.assertTrue(r.exists(ref))
        self.assertEqual(r.inspect(ref).digest, SEEDED.digest)
        self.assertEqual(r.get_image(ref).raw_config, SEEDED.config.data)
        self.assertEqual(r.get_descriptor(ref).digest, SEEDED.digest)
        self.assertEqual(r.read_blob(repo, SEEDED.layers[0].digest), SEEDED.layers[0].data)
        self.assertLogged(D, "Inspect", "reader", ref)
        mark = PLAIN.log_size()
        s = r.write_layer(repo, random_bytes(1000, "reader"))
        self.assertStreamFails(s, CODE.PERMISSION_DENIED, ['tenant "reader" may not push to'])
        p = r.push_image(repo + ":v2", SEEDED)
        self.assertStreamFails(p, CODE.PERMISSION_DENIED, ['tenant "reader"'])
        self.assertDenied(CODE.PERMISSION_DENIED, r.push_index, repo + ":idx", ref)
        # Its pull rule covers team-a/ only.
        self.assertDenied(CODE.PERMISSION_DENIED, r.exists, "%s/team-b/seeded:v1" % PLAIN.host,
                          words=['tenant "reader" may not pull from'])
        self.assertEqual(PLAIN.access_log_since(mark), [])

    def test_prefix_matches_whole_segments_and_the_port(self):
        a = tenant("team-a")
        mark_p, mark_b = PLAIN.log_size(), BASIC.log_size()
        for repo in ("%s/team-ab/x" % PLAIN.host, "%s/team-a-b/x" % PLAIN.host,
                     "%s/team/a" % PLAIN.host, "%s/team-a/x" % BASIC.host,
                     "%s/xteam-a/x" % PLAIN.host):
            with self.subTest(repo=repo):
                self.assertStreamFails(a.write_layer(repo, b"y" * 100), CODE.PERMISSION_DENIED)
                self.assertDenied(CODE.PERMISSION_DENIED, a.exists, repo + ":v1")
        self.assertEqual(PLAIN.access_log_since(mark_p), [])
        self.assertEqual(BASIC.access_log_since(mark_b), [])
        # Docker Hub short names are docker.io/library/...: not team-a's.
        for ref in ("alpine", "library/alpine:3", "docker.io/alpine", "index.docker.io/x/y:v1"):
            with self.subTest(ref=ref):
                self.assertDenied(CODE.PERMISSION_DENIED, a.exists, ref,
                                  words=['tenant "team-a" may not pull from docker.io/'])
        # The registry part of a prefix is compared case-insensitively ("LocalHost:PORT/mixed").
        self.assertFalse(a.exists("localhost:%d/mixed/x:v1" % PLAIN.port))
        self.assertDenied(CODE.PERMISSION_DENIED, a.exists,
                          "localhost:%d/mixedx/x:v1" % PLAIN.port)


class FileSourcesTest(PolicyCase):
    def write_file(self, who, repo, path):
        return Stream(who.stub.WriteLayer(
            pb.WriteLayerRequest(repo=repo, layer=pb.BlobSource(path=path), retry=retry()),
            timeout=T, metadata=who.metadata))

    def test_file_sources_only_beneath_the_tenants_own_paths(self):
        data = random_bytes(4096, uniq("file"))
        mine = os.path.join(files_dir("a"), uniq("layer"))
        theirs = os.path.join(files_dir("b"), uniq("layer"))
        for p in (mine, theirs):
            with open(p, "wb") as f:
                f.write(data)
        a, b = tenant("team-a"), tenant("team-b")
        s = self.write_file(a, "%s/team-a/%s" % (PLAIN.host, uniq("f")), mine)
        self.assertLayerStream(s, len(data), "UPLOADED")
        # Another tenant's files are not the tenant's, --allowed_paths or not.
        self.assertStreamFails(self.write_file(a, "%s/team-a/%s" % (PLAIN.host, uniq("f")),
                                               theirs), CODE.PERMISSION_DENIED)
        # A tenant the policy gives no paths has no file sources at all.
        self.assertStreamFails(self.write_file(b, "%s/team-b/%s" % (PLAIN.host, uniq("f")),
                                               theirs), CODE.PERMISSION_DENIED,
                               ['tenant "team-b" has no allowed_paths'])


class MountAndUploadTest(PolicyCase):
    def test_mount_from_outside_the_tenants_pull_prefixes_is_not_used(self):
        a = tenant("team-a")
        blob = SEEDED_B.layers[0]  # in team-b/seeded, which team-a may not read
        for mount_from in ("team-b/seeded", "%s/team-b/seeded" % PLAIN.host):
            with self.subTest(mount_from=mount_from):
                repo = "%s/team-a/%s" % (PLAIN.host, uniq("mount"))
                mark = PLAIN.log_size()
                s = a.write_layer(repo, blob.data, mount_from=mount_from)
                self.assertLayerStream(s, blob.size, "UPLOADED")
                log = PLAIN.access_log_since(mark)
                self.assertEqual([e for e in log if "team-b" in e[1]], [], log)
                up = a.upload_blob("%s/team-a/%s" % (PLAIN.host, uniq("mount-up")), blob.data,
                                   mount_from=mount_from)
                self.assertEqual((up.code, up.outcome()), (CODE.OK, "UPLOADED"), up.summary())
                log = PLAIN.access_log_since(mark)
                self.assertEqual([e for e in log if "team-b" in e[1]], [], log)
        # From a repository it may read, the mount is made.
        own = SEEDED.layers[0]
        s = a.write_layer("%s/team-a/%s" % (PLAIN.host, uniq("mount-own")), own.data,
                          mount_from="team-a/seeded")
        self.assertLayerStream(s, own.size, "MOUNTED")

    def test_upload_blob_follows_the_policy(self):
        a = tenant("team-a")
        data = random_bytes(1500 * 1024, uniq("ub"))
        repo = "%s/team-a/%s" % (PLAIN.host, uniq("ub"))
        up = a.upload_blob(repo, data)
        self.assertEqual((up.code, up.outcome()), (CODE.OK, "UPLOADED"), up.summary())
        self.assertIn("send_from", up.kinds())
        self.assertLogged(D, "UploadBlob", "team-a", "%s@%s" % (repo, sha256(data)))
        mark = PLAIN.log_size()
        self.assertUploadFails(a.upload_blob("%s/team-b/%s" % (PLAIN.host, uniq("ub")), data),
                               CODE.PERMISSION_DENIED, ['tenant "team-a" may not push to'])
        self.assertUploadFails(tenant("reader").upload_blob(repo, data),
                               CODE.PERMISSION_DENIED, ['tenant "reader"'])
        self.assertUploadFails(Caller(D.stub, UNKNOWN_TOKEN).upload_blob(repo, data),
                               CODE.UNAUTHENTICATED)
        self.assertUploadFails(Caller(D.stub).upload_blob(repo, data), CODE.UNAUTHENTICATED)
        self.assertEqual(PLAIN.access_log_since(mark), [])

    def test_one_blob_pushed_by_two_tenants_at_once_is_not_mounted_across(self):
        # team-a and team-b use the same (no) registry credentials, so their
        # uploads of one blob may share a flight; team-b may not read team-a's
        # repository, so it must never get the blob by a mount from there.
        a, b = tenant("team-a"), tenant("team-b")
        size = 2 * MiB
        data = random_bytes(size, uniq("cross"))
        ra = "%s/team-a/%s" % (PROXY.host, uniq("cross"))
        rb = "%s/team-b/%s" % (PROXY.host, uniq("cross"))
        fault = PROXY.add_fault("throttle", method="PUT", path=r"/blobs/uploads/", times=None,
                                rate=1 * MiB)
        self.addCleanup(PROXY.remove_fault, fault)
        PROXY.reset_counters()
        first = call_async(lambda: a.write_layer(ra, data, timeout=60))
        util.wait_until(lambda: [e for e in PROXY.log(method="PUT") if e.finished is None],
                        15, what="team-a's PUT")
        second = b.write_layer(rb, data, timeout=60)
        first.join(60)
        self.assertIsNone(first.exc)
        self.assertLayerStream(first.value, size, "UPLOADED")
        self.assertStreamOk(second)
        self.assertEqual(second.kinds()[-1], "result", second.summary())
        res = second.events[-1].result
        self.assertIn(res.Outcome.Name(res.outcome), ("UPLOADED", "EXISTED"), second.summary())
        PROXY.wait_idle()
        crossing = [e for e in PROXY.log() if "team-a" in e.path and "team-b" in e.path]
        self.assertEqual(crossing, [], "team-b's upload touched team-a's repository")
        self.assertLogged(D, "WriteLayer", "team-b", rb)
        # And team-b's stream keeps the WriteLayer contract: when its progress starts
        # again from 0 (after waiting on another upload), a RetryEvent says why first.
        self.assertLayerStream(second, size)


class ConcurrencyLimitTest(PolicyCase):
    def test_a_cancelled_call_frees_its_tenants_slot(self):
        l_ = tenant("team-l")
        data = random_bytes(3 * MiB, uniq("cancel"))
        repo = "%s/team-l/%s" % (PROXY.host, uniq("cancel"))
        fault = PROXY.add_fault("throttle", method="PUT", path=r"/blobs/uploads/", times=None,
                                rate=768 * 1024)
        self.addCleanup(PROXY.remove_fault, fault)
        PROXY.reset_counters()
        call = D.stub.WriteLayer(pb.WriteLayerRequest(repo=repo, layer=pb.BlobSource(data=data),
                                                      retry=retry()),
                                 timeout=60, metadata=l_.metadata)
        util.wait_until(lambda: [e for e in PROXY.log(method="PUT") if e.finished is None],
                        15, what="the PUT")
        self.assertDenied(CODE.RESOURCE_EXHAUSTED, l_.exists, "%s/team-l/x:v1" % PLAIN.host)
        call.cancel()
        cancelled = time.monotonic()

        def admitted():
            try:
                return l_.exists("%s/team-l/x:v1" % PLAIN.host) is False
            except grpc.RpcError as e:
                if e.code() != CODE.RESOURCE_EXHAUSTED:
                    raise
                return False
        util.wait_until(admitted, 10, interval=0.1, what="team-l's slot after the cancel")
        self.assertLess(time.monotonic() - cancelled, 10)
        PROXY.wait_idle(timeout=15)

    def test_tenant_over_its_limit_is_refused_and_others_are_not_slowed(self):
        l_, b = tenant("team-l"), tenant("team-b")
        size = 3 * MiB
        data = random_bytes(size, uniq("slow"))
        repo = "%s/team-l/%s" % (PROXY.host, uniq("slow"))
        fault = PROXY.add_fault("throttle", method="PUT", path=r"/blobs/uploads/", times=None,
                                rate=768 * 1024)  # about 4 s
        self.addCleanup(PROXY.remove_fault, fault)
        PROXY.reset_counters()
        slow = call_async(lambda: l_.write_layer(repo, data, timeout=60))

        def put_in_flight():
            return [e for e in PROXY.log(method="PUT") if e.finished is None and e.body_in > 0]
        util.wait_until(put_in_flight, 15, what="the slow PUT")
        # team-l's second call, while the first runs.
        err = self.assertDenied(CODE.RESOURCE_EXHAUSTED, l_.exists,
                                "%s/team-l/x:v1" % PLAIN.host, words=['"team-l"'])
        self.assertIn("limit", err.details())
        self.assertStreamFails(l_.write_layer("%s/team-l/y" % PLAIN.host, b"z" * 100),
                               CODE.RESOURCE_EXHAUSTED)
        # Another tenant is served at once, while team-l's upload still runs.
        started = time.monotonic()
        self.assertTrue(b.exists("%s/team-b/seeded:v1" % PLAIN.host))
        self.assertLayerStream(b.write_layer("%s/team-b/%s" % (PLAIN.host, uniq("fast")),
                                             random_bytes(2000, "fast")), 2000)
        took = time.monotonic() - started
        self.assertLess(took, 2.0, "team-b waited %.1fs behind team-l" % took)
        self.assertTrue(put_in_flight(), "the slow upload ended before team-b's calls: "
                        "the test proves nothing")
        slow.join(60)
        self.assertIsNone(slow.exc)
        self.assertLayerStream(slow.value, size, "UPLOADED")
        # The slot is free again.
        self.assertFalse(l_.exists("%s/team-l/x:v1" % PLAIN.host))
        self.assertLogged(D, "WriteLayer", "team-l", repo)


class TenantCredentialsTest(PolicyCase):
    """docker_config per tenant, against the htpasswd registry."""

    def test_tenant_docker_config_supplies_credentials(self):
        ref = "%s/shared/img:v1" % BASIC.host
        repo = "%s/shared/%s" % (BASIC.host, uniq("creds"))
        good = tenant("basic-creds")
        self.assertEqual(good.inspect(ref).digest, BASIC_IMG.digest)
        data = random_bytes(5000, uniq("basic"))
        self.assertLayerStream(good.write_layer(repo, data), len(data), "UPLOADED")
        self.assertLogged(D, "Inspect", "basic-creds", ref)
        # No credentials anywhere (the daemon has none either).
        none = tenant("basic-none")
        self.assertDenied(CODE.UNAUTHENTICATED, none.inspect, ref)
        self.assertStreamFails(none.write_layer(repo, data), CODE.UNAUTHENTICATED)
        self.assertLogged(D, "Inspect", "basic-none", ref, "UNAUTHENTICATED")
        # Wrong ones in the tenant's file.
        wrong = tenant("basic-wrong")
        self.assertDenied(CODE.UNAUTHENTICATED, wrong.inspect, ref)
        self.assertStreamFails(wrong.write_layer(repo, data), CODE.UNAUTHENTICATED)

    def test_tenant_config_comes_before_the_daemons(self):
        ref = "%s/shared/img:v1" % BASIC.host
        # DOWN has the right credentials itself: a tenant without a docker_config gets them...
        self.assertEqual(tenant("basic-none", DOWN).inspect(ref).digest, BASIC_IMG.digest)
        # ...but a tenant whose own file has (wrong) ones gets only those.
        self.assertDenied(CODE.UNAUTHENTICATED, tenant("basic-wrong", DOWN).inspect, ref)
        self.assertEqual(tenant("basic-creds", DOWN).inspect(ref).digest, BASIC_IMG.digest)

    def test_call_credentials_come_before_the_tenants(self):
        ref = "%s/shared/img:v1" % BASIC.host

        def xra(user, password):
            raw = json.dumps({"username": user, "password": password}).encode()
            return [("x-registry-auth", base64.urlsafe_b64encode(raw).decode().rstrip("="))]
        right = Caller(D.stub, TOKENS["basic-none"], xra(*BASIC_USER))
        self.assertEqual(right.inspect(ref).digest, BASIC_IMG.digest)
        wrong = Caller(D.stub, TOKENS["basic-creds"], xra(BASIC_USER[0], WRONG_PASSWORD))
        self.assertDenied(CODE.UNAUTHENTICATED, wrong.inspect, ref)
        # The policy still applies to a caller with its own registry credentials.
        other = Caller(D.stub, TOKENS["team-b"], xra(*BASIC_USER))
        mark = BASIC.log_size()
        self.assertDenied(CODE.PERMISSION_DENIED, other.inspect, ref)
        self.assertEqual(BASIC.access_log_since(mark), [])


# -- mTLS tenants ------------------------------------------------------------------------------

class MtlsTenantTest(PolicyCase):
    def channel(self, cert):
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(CERTS["ca"][0]),
            private_key=read(CERTS[cert][1]), certificate_chain=read(CERTS[cert][0]))
        ch = grpc.secure_channel(DT.target, creds)
        self.addCleanup(ch.close)
        return S.registry_pb2_grpc.RegistryStub(ch)

    def test_client_cert_cn_names_a_tenant(self):
        c = Caller(self.channel("cn"))
        repo = "%s/team-c/%s" % (PLAIN.host, uniq("cn"))
        self.assertLayerStream(c.write_layer(repo, random_bytes(1000, "cn")), 1000, "UPLOADED")
        self.assertFalse(c.exists(repo + ":v1"))
        self.assertLogged(DT, "WriteLayer", "team-c", repo)
        mark = PLAIN.log_size()
        self.assertDenied(CODE.PERMISSION_DENIED, c.exists, "%s/team-d/x:v1" % PLAIN.host,
                          words=['tenant "team-c"'])
        self.assertEqual(PLAIN.access_log_since(mark), [])

    def test_client_cert_uri_san_names_a_tenant(self):
        c = Caller(self.channel("san"))
        repo = "%s/team-d/%s" % (PLAIN.host, uniq("san"))
        self.assertLayerStream(c.write_layer(repo, random_bytes(1000, "san")), 1000, "UPLOADED")
        self.assertLogged(DT, "WriteLayer", "team-d", repo)
        self.assertDenied(CODE.PERMISSION_DENIED, c.exists, "%s/team-c/x:v1" % PLAIN.host,
                          words=['tenant "team-d"'])

    def test_cn_is_tried_before_uri_san(self):
        c = Caller(self.channel("both"))
        self.assertFalse(c.exists("%s/team-c/x:v1" % PLAIN.host))
        self.assertLogged(DT, "Exists", "team-c", "%s/team-c/x:v1" % PLAIN.host)
        self.assertDenied(CODE.PERMISSION_DENIED, c.exists, "%s/team-d/x:v1" % PLAIN.host)

    def test_cert_matching_no_tenant_is_unauthenticated(self):
        c = Caller(self.channel("stranger"))
        mark = PLAIN.log_size()
        for repo in ("team-c", "team-d", "team-e"):
            with self.subTest(repo=repo):
                self.assertDenied(CODE.UNAUTHENTICATED, c.exists,
                                  "%s/%s/x:v1" % (PLAIN.host, repo))
        self.assertStreamFails(c.write_layer("%s/team-c/x" % PLAIN.host, b"q" * 10),
                               CODE.UNAUTHENTICATED)
        self.assertDenied(CODE.UNAUTHENTICATED, Caller(self.channel("stranger"),
                                                       UNKNOWN_TOKEN).exists,
                          "%s/team-e/x:v1" % PLAIN.host)
        self.assertEqual(PLAIN.access_log_since(mark), [])
        # A matching bearer token still counts next to a certificate that matches nothing.
        e = Caller(self.channel("stranger"), TOKENS["team-e"])
        self.assertFalse(e.exists("%s/team-e/x:v1" % PLAIN.host))
        self.assertLogged(DT, "Exists", "team-e", "%s/team-e/x:v1" % PLAIN.host)
        self.assertDenied(CODE.PERMISSION_DENIED, e.exists, "%s/team-c/x:v1" % PLAIN.host)


# -- the policy file ------------------------------------------------------------------------------

class BadPolicyTest(testing.IntegrationCase):
    def run_regd(self, policy_text):
        path = os.path.join(ENV.workdir, "bad-policy-%s.json" % uniq("p"))
        with open(path, "w") as f:
            f.write(policy_text)
        d = Daemon(ENV.workdir, extra_args=["--policy=" + path])
        d.spawn()
        try:
            rc = d.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            d.kill()
            self.fail("regd kept running with policy %s" % policy_text)
        util.untrack(d.proc)
        return rc, d.log()

    def test_bad_policy_files_stop_the_daemon(self):
        h = token_hash("some-token")
        secret_hash = token_hash("another-token")
        reg = "registry.example.com"

        def one(extra=None, allow=None, name="ci", **kw):
            t = {"name": name, "token_sha256": h,
                 "allow": allow or [{"prefix": reg + "/ci", "actions": ["pull"]}]}
            t.update(extra or {})
            t.update(kw)
            return json.dumps({"tenants": [t]})

        missing_cfg = os.path.join(ENV.workdir, "no-such-dir", "config.json")
        not_object = os.path.join(ENV.workdir, "array-config.json")
        with open(not_object, "w") as f:
            f.write("[1, 2]")
        cases = [
            ("not JSON", "{tenants: oops", ["policy"]),
            ("empty file", "", ["policy"]),
            ("unknown top-level key", json.dumps({"tenants": [], "extra": 1}), ['"extra"']),
            ("no tenants", json.dumps({"tenants": []}), ["tenants", "at least one"]),
            ("unknown tenant key", one(colour="red"), ['tenants[0] ("ci")', '"colour"']),
            ("empty path segment",
             one(allow=[{"prefix": reg + "//x", "actions": ["pull"]}]),
             ['tenants[0] ("ci").allow[0].prefix', "empty path segment"]),
            ("glob in prefix", one(allow=[{"prefix": reg + "/team-*", "actions": ["pull"]}]),
             ["allow[0].prefix", "glob"]),
            ("scheme in prefix",
             one(allow=[{"prefix": "https://" + reg + "/x", "actions": ["pull"]}]),
             ["allow[0].prefix", "scheme"]),
            ("no registry in prefix", one(allow=[{"prefix": "team-a/app", "actions": ["pull"]}]),
             ["allow[0].prefix", "registry"]),
            ("bad action", one(allow=[{"prefix": reg + "/x", "actions": ["delete"]}]),
             ["allow[0].actions[0]", '"delete"']),
            ("no actions", one(allow=[{"prefix": reg + "/x", "actions": []}]),
             ["allow[0].actions"]),
            ("token hash not hex", one(token_sha256="zz" * 32), ["token_sha256", "64 hex"]),
            ("token hash too short", one(token_sha256=secret_hash[:40]), ["token_sha256"]),
            ("two identities", one(client_cert_cn="x.example.com"), ["exactly one"]),
            ("no identity", json.dumps({"tenants": [{"name": "ci", "allow": [
                {"prefix": reg, "actions": ["pull"]}]}]}), ["exactly one"]),
            ("missing docker_config", one(docker_config=missing_cfg),
             ['tenants[0] ("ci").docker_config']),
            ("relative docker_config", one(docker_config="config.json"),
             ["docker_config", "absolute"]),
            ("docker_config not an object", one(docker_config=not_object),
             ["docker_config", "not a JSON object"]),
            ("limit out of range", one(max_concurrent_calls=0), ["max_concurrent_calls"]),
            ("bad name", one(name="team a"), ["tenants[0].name"]),
            ("duplicate token", json.dumps({"tenants": [
                {"name": "one", "token_sha256": secret_hash,
                 "allow": [{"prefix": reg, "actions": ["pull"]}]},
                {"name": "two", "token_sha256": secret_hash.upper(),
                 "allow": [{"prefix": reg, "actions": ["pull"]}]}]}),
             ['tenants[1] ("two").token_sha256', 'tenants[0] ("one")']),
            ("duplicate name", json.dumps({"tenants": [
                {"name": "one", "token_sha256": h, "allow": [{"prefix": reg, "actions": ["pull"]}]},
                {"name": "one", "client_cert_cn": "c", "allow": [{"prefix": reg,
                                                                   "actions": ["pull"]}]}]}),
             ['tenants[1] ("one")', "already used"]),
        ]
        for label, text, words in cases:
            with self.subTest(label):
                rc, log = self.run_regd(text)
                self.assertEqual(rc, 2, log)
                for w in words:
                    self.assertIn(w, log)
                # A token hash never shows in a message.
                self.assertNotIn(secret_hash[:40], log)
                self.assertNotIn(secret_hash.upper(), log)
        # And a policy file that is not there.
        d = Daemon(ENV.workdir, extra_args=["--policy=" + missing_cfg])
        d.spawn()
        self.assertEqual(d.proc.wait(timeout=15), 2, d.log())
        util.untrack(d.proc)
        self.assertIn("policy", d.log())


if __name__ == "__main__":
    testing.main("test_policy")
