#!/usr/bin/python3
"""Integration tests for regd's server plumbing: reflection, health, startup, shutdown.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_server.py

No registry is needed: these tests only talk to the daemon.
"""

import os
import re
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402

from fixtures import stubs, testing, util  # noqa: E402
from fixtures.daemon import Daemon, DaemonError  # noqa: E402

S = stubs.load()
T = 10
ENV = None
D = None


def setUpModule():
    global ENV, D
    ENV = testing.Env(prefix="regd-server-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    D = ENV.enter(Daemon(ENV.workdir), "regd")


def reflect(channel, **request):
    """Sends one ServerReflectionRequest and returns the response."""
    stub = S.reflection_pb2_grpc.ServerReflectionStub(channel)
    req = S.reflection_pb2.ServerReflectionRequest(**request)
    responses = list(stub.ServerReflectionInfo(iter([req]), timeout=T))
    if len(responses) != 1:
        raise AssertionError("want 1 reflection response, got %d" % len(responses))
    return responses[0]


class ReflectionTest(testing.IntegrationCase):
    def test_list_services(self):
        r = reflect(D.channel, list_services="")
        self.assertFalse(r.HasField("error_response"), r.error_response)
        names = [s.name for s in r.list_services_response.service]
        self.assertIn("regd.v1.Registry", names)
        self.assertIn("grpc.health.v1.Health", names)

    def test_file_containing_registry_service(self):
        r = reflect(D.channel, file_containing_symbol="regd.v1.Registry")
        self.assertFalse(r.HasField("error_response"), r.error_response)
        files = []
        for raw in r.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(raw)
            files.append(fd)
        regd_files = [f for f in files if f.package == "regd.v1"]
        self.assertEqual(len(regd_files), 1, [f.name for f in files])
        services = {s.name: s for s in regd_files[0].service}
        self.assertIn("Registry", services)
        want = [m.name for m in
                S.registry_pb2.DESCRIPTOR.services_by_name["Registry"].methods]
        self.assertEqual([m.name for m in services["Registry"].method], want)
        streaming = {m.name for m in services["Registry"].method if m.server_streaming}
        self.assertEqual(streaming, {"ReadBlob", "WriteLayer", "PushImage", "UploadBlob",
                                     "PullImage"})
        client_streaming = {m.name for m in services["Registry"].method if m.client_streaming}
        self.assertEqual(client_streaming, {"UploadBlob"})

    def test_unknown_symbol(self):
        r = reflect(D.channel, file_containing_symbol="no.such.Service")
        self.assertTrue(r.HasField("error_response"))
        self.assertEqual(r.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])


class HealthTest(testing.IntegrationCase):
    def check(self, service):
        stub = S.health_pb2_grpc.HealthStub(D.channel)
        return stub.Check(S.health_pb2.HealthCheckRequest(service=service), timeout=T)

    def test_overall_serving(self):
        self.assertEqual(self.check("").status, S.health_pb2.HealthCheckResponse.SERVING)

    def test_registry_serving(self):
        self.assertEqual(self.check("regd.v1.Registry").status,
                         S.health_pb2.HealthCheckResponse.SERVING)

    def test_unknown_service(self):
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, self.check, "no.such.Service")


class LifecycleTest(testing.IntegrationCase):
    def test_ready_file_names_the_tcp_address(self):
        self.assertRegex(D.address, r"^127\.0\.0\.1:[1-9][0-9]*$")
        with open(D.ready_path) as f:
            self.assertEqual(f.read().strip(), D.address)
        # The ready file is written via rename: no temp file is left beside it.
        left = set(os.listdir(os.path.dirname(D.ready_path))) - {"stderr.log", "docker-config"}
        self.assertEqual(left, {"ready"})

    def test_unix_socket_listener(self):
        with Daemon(ENV.workdir, listen="unix") as d:
            ENV.logs.append(("regd-unix", d.stderr_path))
            self.assertTrue(d.address.startswith("unix:/"), d.address)
            stub = S.health_pb2_grpc.HealthStub(d.channel)
            r = stub.Check(S.health_pb2.HealthCheckRequest(service=""), timeout=T)
            self.assertEqual(r.status, S.health_pb2.HealthCheckResponse.SERVING)

    def _start_and_signal(self, sig):
        d = Daemon(ENV.workdir)
        d.start()
        ENV.logs.append(("regd-signal", d.stderr_path))
        try:
            # A live connection with a finished call must not block shutdown.
            stub = S.health_pb2_grpc.HealthStub(d.channel)
            stub.Check(S.health_pb2.HealthCheckRequest(service=""), timeout=T)
            start = time.monotonic()
            d.signal(sig)
            rc = d.wait(10)
            self.assertIsNotNone(rc, "regd still running 10 s after %s:\n%s" % (sig.name, d.log()))
            self.assertEqual(rc, 0, "exit code after %s:\n%s" % (sig.name, d.log()))
            self.assertLess(time.monotonic() - start, 10)
        finally:
            d.kill()

    def test_sigterm_exits_zero(self):
        self._start_and_signal(signal.SIGTERM)

    def test_sigint_exits_zero(self):
        self._start_and_signal(signal.SIGINT)

    def _expect_startup_failure(self, **kwargs):
        d = Daemon(ENV.workdir, ready_timeout=10, **kwargs)
        ENV.logs.append(("regd-bad-start", d.stderr_path))
        try:
            with self.assertRaises(DaemonError) as cm:
                d.start()
            self.assertIn("exited with", str(cm.exception), "regd should fail fast")
            self.assertNotEqual(d.returncode, 0)
            self.assertFalse(os.path.exists(d.ready_path))
        finally:
            d.kill()

    def test_bad_config_file_fails_fast(self):
        path = os.path.join(ENV.workdir, "bad-config.json")
        with open(path, "w") as f:
            f.write("{ this is not json")
        self._expect_startup_failure(config=path)

    def test_missing_config_file_fails_fast(self):
        self._expect_startup_failure(config=os.path.join(ENV.workdir, "no-such-config.json"))

    def test_unknown_flag_fails_fast(self):
        self._expect_startup_failure(extra_args=["--no_such_flag_for_regd=1"])


class Blackhole:
    """A TCP listener that accepts connections and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.host = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class UnaryCancellationTest(testing.IntegrationCase):
    """A unary call stuck on an unresponsive registry stops when its caller
    goes away, and does not hold up shutdown."""

    def setUp(self):
        self.hole = Blackhole()
        self.addCleanup(self.hole.close)

    def test_deadline_cancels_the_engine_work(self):
        d = Daemon(ENV.workdir, insecure_registries=[self.hole.host]).start()
        self.addCleanup(d.kill)
        start = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            d.stub.Inspect(S.registry_pb2.InspectRequest(image_ref=self.hole.host + "/x/y:1"),
                           timeout=1)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # The engine's side ends too, within a second or so of the deadline
        # (the stall timeout is a minute, so only the cancel can end it).
        util.wait_until(lambda: re.search(r"Inspect .*/x/y:1 CANCELLED", d.log()), 5,
                        what="the Inspect to be cancelled in the daemon")
        self.assertLess(time.monotonic() - start, 6)

    def test_sigterm_with_a_stuck_unary_call_exits_within_the_grace(self):
        d = Daemon(ENV.workdir, insecure_registries=[self.hole.host],
                   extra_args=["--shutdown_grace=1s"]).start()
        self.addCleanup(d.kill)
        fut = d.stub.GetImage.future(
            S.registry_pb2.GetImageRequest(image_ref=self.hole.host + "/x/y:1"), timeout=60)
        util.wait_until(lambda: self.hole.conns, 5, what="regd to reach the registry")
        start = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait(15)
        self.assertEqual(rc, 0, d.log())
        self.assertLess(time.monotonic() - start, 6, d.log())
        with self.assertRaises(grpc.RpcError):
            fut.result(timeout=5)


if __name__ == "__main__":
    testing.main("test_server")
