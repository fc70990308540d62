#!/usr/bin/python3
"""Integration tests for the metadata cache (--cache_bytes): manifests and
configs fetched by digest come from memory, tags always from the registry.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_cache.py [-k name]

Two docker-registry 2.8 instances: PLAIN (no auth) and BASIC (htpasswd,
alice). What reaches a registry is read from its own access log. Daemons,
none with registry credentials of its own:

  D    the default cache (64 MiB), --metrics_listen
  D0   --cache_bytes=0: no cache

Every test pushes an image of its own, so that nothing another test did is
in D's cache. The promises checked:
  - Inspect by digest 100 times: one manifest GET and one config GET reach the
    registry; GetImage by digest likewise, and the two share entries;
  - Inspect by tag N times: N manifest GETs (the config, by digest, once);
  - on BASIC, what caller A (right password) filled is never served to caller
    B (wrong password) or C (none): both get UNAUTHENTICATED, and the registry
    saw their own refused requests; A's repeat is still served from memory;
  - with --cache_bytes=0, every Inspect by digest asks the registry.
"""

import base64
import itertools
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import images, stubs, testing, util  # noqa: E402
from fixtures.callers import Caller  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.registry import Registry  # noqa: E402

S = stubs.load()
pb = S.registry_pb2
T = 30
CODE = grpc.StatusCode

ALICE = ("alice", "pw-alice-5f2c8e1a9d37")
WRONG = "pw-wrong-a81c3e7d2b94"

ENV = None
PLAIN = None
BASIC = None
D = None
D0 = None
_names = itertools.count(1)


def setUpModule():
    global ENV, PLAIN, BASIC, D, D0
    ENV = testing.Env(prefix="regd-cache-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    PLAIN = ENV.enter(Registry(ENV.workdir, auth="none"), "registry-plain")
    BASIC = ENV.enter(Registry(ENV.workdir, auth="basic", users=dict([ALICE])),
                      "registry-basic")
    hosts = [PLAIN.host, BASIC.host]
    D = ENV.enter(Daemon(ENV.workdir, insecure_registries=hosts,
                         extra_args=["--metrics_listen=127.0.0.1:0"], rpc_timeout=T), "regd")
    D0 = ENV.enter(Daemon(ENV.workdir, insecure_registries=hosts,
                          extra_args=["--cache_bytes=0"], rpc_timeout=T), "regd-nocache")


# -- helpers ---------------------------------------------------------------------------------

def push_new(reg, creds=None):
    """Pushes an image no other test has (its own labels, so its own digests)."""
    n = next(_names)
    img = images.build_image("cache%d" % n, {"org.example.cache": str(n)})
    return images.push(img, ENV.workdir, reg.host, "cache/img%d" % n, "v1", creds=creds)


def xra(user, password):
    obj = json.dumps({"username": user, "password": password}).encode()
    return [("x-registry-auth", base64.urlsafe_b64encode(obj).decode().rstrip("="))]


def requests_to(reg, mark, img):
    """[(method, path, status)] the registry logged since `mark` for img's repository."""
    prefix = "/v2/%s/" % img.repo
    return [e for e in reg.access_log_since(mark) if e[1].startswith(prefix)]


def manifest_gets(log, status=None):
    return [e for e in log if e[0] == "GET" and "/manifests/" in e[1]
            and (status is None or e[2] == status)]


def config_gets(log, img, status=None):
    return [e for e in log if e[0] == "GET" and e[1].endswith("/blobs/" + img.config.digest)
            and (status is None or e[2] == status)]


def metrics_port(daemon):
    """The port regd logged at start (read from the start of its log)."""
    with open(daemon.stderr_path, encoding="utf-8", errors="replace") as f:
        m = re.search(r"metrics on port (\d+) at /metrics", f.read(1 << 16))
    if not m:
        raise AssertionError("regd logged no metrics port:\n" + daemon.log())
    return int(m.group(1))


def cache_counts(daemon):
    """{"hit": n, "miss": n} from regd_cache_requests_total on /metrics."""
    status, _, body = util.http_get("http://127.0.0.1:%d/metrics" % metrics_port(daemon))
    if status != 200:
        raise AssertionError("GET /metrics: %s" % status)
    out = {}
    for result, value in re.findall(r'^regd_cache_requests_total\{result="(\w+)"\} (\S+)$',
                                    body.decode(), re.M):
        out[result] = float(value)
    return out


class CacheCase(testing.IntegrationCase):
    def tearDown(self):
        for d in (D, D0):
            self.assertTrue(d.alive(), "regd died:\n" + d.log())

    def assertInspected(self, r, img):
        self.assertEqual(r.digest, img.digest)
        self.assertEqual(r.config, img.config.digest)
        self.assertEqual(list(r.layers), [l.digest for l in img.layers])
        self.assertEqual(dict(r.labels), img.labels)


# -- a registry without auth --------------------------------------------------------------------

class ByDigestTest(CacheCase):
    def test_inspect_by_digest_100_times_asks_once(self):
        img = push_new(PLAIN)
        c = Caller(D.stub)
        before = cache_counts(D)
        mark = PLAIN.log_size()
        for _ in range(100):
            self.assertInspected(c.inspect(img.digest_ref), img)
        log = requests_to(PLAIN, mark, img)
        self.assertEqual(len(manifest_gets(log, 200)), 1, log)
        self.assertEqual(len(config_gets(log, img, 200)), 1, log)
        self.assertEqual(len(log), 2, log)
        after = cache_counts(D)
        # Each Inspect looks up the manifest and the config: 2 misses, then hits.
        self.assertEqual(after.get("miss", 0) - before.get("miss", 0), 2, after)
        self.assertEqual(after.get("hit", 0) - before.get("hit", 0), 198, after)

    def test_get_image_by_digest_asks_once(self):
        img = push_new(PLAIN)
        c = Caller(D.stub)
        mark = PLAIN.log_size()
        for _ in range(20):
            r = c.get_image(img.digest_ref)
            self.assertEqual(r.raw_manifest, img.manifest.data)
            self.assertEqual(r.raw_config, img.config.data)
            self.assertEqual(r.descriptor.digest, img.digest)
            self.assertEqual(r.descriptor.media_type, img.manifest.media_type)
        log = requests_to(PLAIN, mark, img)
        self.assertEqual(len(manifest_gets(log, 200)), 1, log)
        self.assertEqual(len(config_gets(log, img, 200)), 1, log)
        self.assertEqual(len(log), 2, log)

    def test_inspect_and_get_image_share_entries(self):
        img = push_new(PLAIN)
        c = Caller(D.stub)
        self.assertInspected(c.inspect(img.digest_ref), img)
        mark = PLAIN.log_size()
        r = c.get_image(img.digest_ref)
        self.assertEqual(r.raw_manifest, img.manifest.data)
        self.assertEqual(r.raw_config, img.config.data)
        self.assertEqual(requests_to(PLAIN, mark, img), [])

    def test_another_repository_is_asked(self):
        # The same content in another repository: the registry decides for
        # that repository, so regd asks again.
        img = push_new(PLAIN)
        c = Caller(D.stub)
        self.assertInspected(c.inspect(img.digest_ref), img)
        other = images.push(img, ENV.workdir, PLAIN.host, img.repo + "-copy", "v1")
        mark = PLAIN.log_size()
        self.assertInspected(c.inspect(other.digest_ref), img)
        log = requests_to(PLAIN, mark, other)
        self.assertEqual(len(manifest_gets(log, 200)), 1, log)


class ByTagTest(CacheCase):
    def test_inspect_by_tag_asks_for_the_manifest_every_time(self):
        img = push_new(PLAIN)
        c = Caller(D.stub)
        n = 5
        mark = PLAIN.log_size()
        for _ in range(n):
            self.assertInspected(c.inspect(img.ref), img)
        log = requests_to(PLAIN, mark, img)
        self.assertEqual(len(manifest_gets(log, 200)), n, log)
        self.assertTrue(all(e[1].endswith("/manifests/v1") for e in manifest_gets(log)), log)
        self.assertEqual(len(config_gets(log, img, 200)), 1, log)

    def test_a_moved_tag_is_seen_at_once(self):
        first = push_new(PLAIN)
        c = Caller(D.stub)
        self.assertInspected(c.inspect(first.ref), first)
        second = images.build_image("moved%d" % next(_names), {"org.example.moved": "yes"})
        images.push(second, ENV.workdir, PLAIN.host, first.repo, "v1")
        self.assertInspected(c.inspect(second.ref), second)
        # The first image by digest still resolves (and its manifest was never
        # cached under the tag).
        self.assertInspected(c.inspect(first.digest_ref), first)


class DisabledTest(CacheCase):
    def test_cache_bytes_zero_asks_every_time(self):
        img = push_new(PLAIN)
        c = Caller(D0.stub)
        n = 5
        mark = PLAIN.log_size()
        for _ in range(n):
            self.assertInspected(c.inspect(img.digest_ref), img)
        log = requests_to(PLAIN, mark, img)
        self.assertEqual(len(manifest_gets(log, 200)), n, log)
        self.assertEqual(len(config_gets(log, img, 200)), n, log)


# -- who may be served: a registry with htpasswd ----------------------------------------------

class CredentialsTest(CacheCase):
    def test_only_callers_the_registry_accepted_are_served(self):
        img = push_new(BASIC, creds=ALICE)
        a = Caller(D.stub, metadata=xra(*ALICE))
        b = Caller(D.stub, metadata=xra(ALICE[0], WRONG))
        c = Caller(D.stub)
        mark = BASIC.log_size()
        self.assertInspected(a.inspect(img.digest_ref), img)
        log = requests_to(BASIC, mark, img)
        self.assertEqual(len(manifest_gets(log, 200)), 1, log)
        self.assertEqual(len(config_gets(log, img, 200)), 1, log)

        for who, caller in (("wrong password", b), ("no credentials", c)):
            for rpc in (caller.inspect, caller.get_image):
                with self.subTest(who=who, rpc=rpc.__name__):
                    mark = BASIC.log_size()
                    self.assertRpcError(CODE.UNAUTHENTICATED, rpc, img.digest_ref)
                    log = requests_to(BASIC, mark, img)
                    # The registry was asked, with the caller's own credentials,
                    # and refused: nothing came from A's entries.
                    self.assertTrue(log, "the registry was not asked")
                    self.assertEqual([e for e in log if e[2] != 401], [], log)

        mark = BASIC.log_size()
        for _ in range(10):
            self.assertInspected(a.inspect(img.digest_ref), img)
        r = a.get_image(img.digest_ref)
        self.assertEqual(r.raw_config, img.config.data)
        self.assertEqual(requests_to(BASIC, mark, img), [])

    def test_cache_holds_no_content_for_a_refused_caller(self):
        # B tries first (refused), then A fills, then B again: still refused.
        img = push_new(BASIC, creds=ALICE)
        a = Caller(D.stub, metadata=xra(*ALICE))
        b = Caller(D.stub, metadata=xra(ALICE[0], WRONG))
        self.assertRpcError(CODE.UNAUTHENTICATED, b.inspect, img.digest_ref)
        self.assertInspected(a.inspect(img.digest_ref), img)
        mark = BASIC.log_size()
        self.assertRpcError(CODE.UNAUTHENTICATED, b.inspect, img.digest_ref)
        log = requests_to(BASIC, mark, img)
        self.assertTrue(log, "the registry was not asked")
        self.assertEqual([e for e in log if e[2] != 401], [], log)


if __name__ == "__main__":
    testing.main("cache")
