#!/usr/bin/python3
"""The daemon's own listener: TLS, mTLS, certificate rotation, and the rule
that a listener other hosts can reach speaks TLS.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_listener.py

Certificates are made here with openssl: a CA, a server certificate for
127.0.0.1 signed by it, a client certificate signed by it, and a second CA
with a client certificate of its own (which regd must refuse).
"""

import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import stubs, testing  # noqa: E402
from fixtures.certs import make_ca, make_leaf  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402

S = stubs.load()
pb = S.registry_pb2
ENV = None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def reaches(channel, timeout=5):
    """True when an RPC reaches regd over `channel` (an invalid reference gets
    INVALID_ARGUMENT from regd itself; a refused handshake is UNAVAILABLE)."""
    stub = S.registry_pb2_grpc.RegistryStub(channel)
    try:
        stub.Exists(pb.ExistsRequest(image_ref="NOT A REFERENCE"), timeout=timeout)
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return True
        return False
    return True


def setUpModule():
    global ENV
    ENV = testing.Env(prefix="regd-listener-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)


class ListenerCase(testing.IntegrationCase):
    def setUp(self):
        self.dir = os.path.join(ENV.workdir, self.id().rsplit(".", 1)[-1])
        os.makedirs(self.dir)
        self.ca = make_ca(self.dir, "a")
        self.server = make_leaf(self.dir, "server", self.ca, "regd", "IP:127.0.0.1")
        self.client = make_leaf(self.dir, "client", self.ca, "team-a")
        self.other_ca = make_ca(self.dir, "b")
        self.stranger = make_leaf(self.dir, "stranger", self.other_ca, "team-b")
        # The files regd serves, replaced in place to rotate.
        self.cert, self.key = os.path.join(self.dir, "tls.crt"), os.path.join(self.dir, "tls.key")
        shutil.copy(self.server[0], self.cert)
        shutil.copy(self.server[1], self.key)

    def start(self, *args):
        d = Daemon(ENV.workdir, extra_args=list(args))
        d.spawn()
        self.addCleanup(d.kill)
        d._wait_ready()
        return d

    def tls_channel(self, d, ca=None, client=None):
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(ca or self.ca[0]),
            private_key=read(client[1]) if client else None,
            certificate_chain=read(client[0]) if client else None)
        ch = grpc.secure_channel(d.target, creds)
        self.addCleanup(ch.close)
        return ch

    def plain_channel(self, d):
        ch = grpc.insecure_channel(d.target)
        self.addCleanup(ch.close)
        return ch


class TlsTest(ListenerCase):
    def test_tls_serves_tls_clients_and_refuses_plain_ones(self):
        d = self.start("--tls_cert=" + self.cert, "--tls_key=" + self.key)
        self.assertTrue(reaches(self.tls_channel(d)))
        self.assertFalse(reaches(self.plain_channel(d), timeout=3))
        # A client that does not trust the server's CA refuses it.
        self.assertFalse(reaches(self.tls_channel(d, ca=self.other_ca[0]), timeout=3))
        d.stop()

    def test_mtls_requires_a_client_certificate_from_the_ca(self):
        d = self.start("--tls_cert=" + self.cert, "--tls_key=" + self.key,
                       "--tls_client_ca=" + self.ca[0])
        self.assertTrue(reaches(self.tls_channel(d, client=self.client)))
        self.assertFalse(reaches(self.tls_channel(d), timeout=3), "no client certificate")
        self.assertFalse(reaches(self.tls_channel(d, client=self.stranger), timeout=3),
                         "a client certificate from another CA")
        self.assertFalse(reaches(self.plain_channel(d), timeout=3))
        d.stop()

    def test_rotated_certificate_is_picked_up_without_a_restart(self):
        # (After a rotation, gRPC 1.51 can count a refused handshake as a call in
        # flight, so shutdown may take the whole grace period: keep it short.)
        d = self.start("--tls_cert=" + self.cert, "--tls_key=" + self.key, "--tls_refresh=1s",
                       "--shutdown_grace=2s")
        self.assertTrue(reaches(self.tls_channel(d)))
        # cert-manager style: new files from a new CA, written in place.
        new_ca = make_ca(self.dir, "rotated")
        new_server = make_leaf(self.dir, "server2", new_ca, "regd", "IP:127.0.0.1")
        for src, dst in ((new_server[1], self.key), (new_server[0], self.cert)):
            tmp = dst + ".tmp"
            shutil.copy(src, tmp)
            os.replace(tmp, dst)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not reaches(self.tls_channel(d, ca=new_ca[0]), 2):
            time.sleep(0.5)
        self.assertTrue(reaches(self.tls_channel(d, ca=new_ca[0])),
                        "a client trusting only the new CA never got in")
        self.assertFalse(reaches(self.tls_channel(d), timeout=3),
                         "the old certificate is still served")
        self.assertEqual(d.proc.poll(), None, "regd restarted or died")
        d.stop()


class StartupTest(ListenerCase):
    def run_regd(self, *args):
        d = Daemon(ENV.workdir, extra_args=list(args))
        d.spawn()
        try:
            rc = d.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            d.kill()
            self.fail("regd kept running with %s" % (args,))
        return rc, d.log()

    def test_reachable_address_without_tls_is_refused(self):
        d = Daemon(ENV.workdir, listen="0.0.0.0:0")
        d.spawn()
        rc = d.proc.wait(timeout=15)
        self.assertEqual(rc, 2, d.log())
        self.assertIn("refusing to serve plain gRPC on 0.0.0.0:0", d.log())
        self.assertIn("--allow_insecure_listen", d.log())
        ok = Daemon(ENV.workdir, listen="0.0.0.0:0", extra_args=["--allow_insecure_listen"])
        ok.spawn()
        self.addCleanup(ok.kill)
        ok._wait_ready()
        ok.stop()

    def test_bad_tls_files_fail_at_start(self):
        cases = [
            (["--tls_cert=" + self.cert], "go together"),
            (["--tls_cert=" + self.cert, "--tls_key=" + self.client[1]], "does not belong"),
            (["--tls_cert=" + self.key, "--tls_key=" + self.key], "no PEM certificate"),
            (["--tls_cert=/nonexistent.pem", "--tls_key=" + self.key], "cannot open"),
            (["--tls_cert=" + self.cert, "--tls_key=" + self.key, "--tls_client_ca=" + self.key],
             "no PEM certificate"),
        ]
        for args, words in cases:
            with self.subTest(args=args):
                rc, log = self.run_regd(*args)
                self.assertEqual(rc, 2, log)
                self.assertIn(words, log)


if __name__ == "__main__":
    testing.main("test_listener")
