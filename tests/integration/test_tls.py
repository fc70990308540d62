#!/usr/bin/python3
"""regd against a registry that speaks HTTPS (every registry not named in
--insecure_registries is HTTPS with certificate verification).

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_tls.py

One docker-registry serves TLS with a self-signed certificate for 127.0.0.1
and htpasswd auth. The daemon that trusts the certificate through the
--config file's `ca_bundle` (and takes its credentials from the config's
`credentials_file`) reads and writes; a daemon that does not trust it fails
with UNAVAILABLE and never falls back to plain HTTP.
"""

import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import images, stubs, testing  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.registry import Registry  # noqa: E402
from fixtures.uploads import sha256  # noqa: E402

S = stubs.load()
pb = S.registry_pb2
T = 30
USER = ("tls-user", "tls-pass")
ENV = REG = TRUSTING = UNTRUSTING = IMAGE = None


def make_cert(dir_path):
    cert, key = os.path.join(dir_path, "cert.pem"), os.path.join(dir_path, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


def setUpModule():
    global ENV, REG, TRUSTING, UNTRUSTING, IMAGE
    ENV = testing.Env(prefix="regd-tls-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    cert, key = make_cert(ENV.workdir)
    REG = ENV.enter(Registry(ENV.workdir, auth="basic", users=dict([USER]), tls=(cert, key)),
                    "registry-tls")
    IMAGE = images.build_image("tls", {"org.example.tls": "yes"})
    images.push(IMAGE, ENV.workdir, REG.host, "tls/app", "v1", creds=USER)
    creds_path = os.path.join(ENV.workdir, "creds.json")
    with open(creds_path, "w") as f:
        json.dump({"username": USER[0], "password": USER[1]}, f)
    config = os.path.join(ENV.workdir, "regd.json")
    with open(config, "w") as f:
        json.dump({"registries": {REG.host: {"ca_bundle": cert,
                                             "credentials_file": creds_path}}}, f)
    TRUSTING = ENV.enter(Daemon(ENV.workdir, config=config, allowed_paths=[ENV.workdir]),
                         "regd-trusting")
    UNTRUSTING = ENV.enter(Daemon(ENV.workdir, auths={REG.host: USER}), "regd-untrusting")


class TlsTest(testing.IntegrationCase):
    def test_reads_over_verified_tls(self):
        ref = "%s/tls/app:v1" % REG.host
        r = TRUSTING.stub.Inspect(pb.InspectRequest(image_ref=ref), timeout=T)
        self.assertEqual(r.digest, IMAGE.digest)
        self.assertEqual(dict(r.labels), {"org.example.tls": "yes"})
        self.assertTrue(TRUSTING.stub.Exists(pb.ExistsRequest(image_ref=ref), timeout=T).exists)

    def test_writes_over_verified_tls(self):
        data = os.urandom(300 * 1024)
        events = list(TRUSTING.stub.WriteLayer(pb.WriteLayerRequest(
            repo="%s/tls/upload" % REG.host, layer=pb.BlobSource(data=data)), timeout=T))
        self.assertEqual(events[-1].result.descriptor.digest, sha256(data))
        self.assertEqual(pb.LayerResult.Outcome.Name(events[-1].result.outcome), "UPLOADED")

    def test_untrusted_certificate_is_unavailable_not_plain_http(self):
        ref = "%s/tls/app:v1" % REG.host
        with self.assertRaises(grpc.RpcError) as cm:
            UNTRUSTING.stub.Inspect(pb.InspectRequest(image_ref=ref), timeout=T)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE, cm.exception.details())
        self.assertIn("certificate", cm.exception.details().lower())


if __name__ == "__main__":
    testing.main("test_tls")
