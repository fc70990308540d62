#!/usr/bin/python3
"""Integration tests for regd's read RPCs against a local docker-registry.

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_read.py [-k name]

One registry (no auth) is seeded through skopeo with four images (see
fixtures/images.py): (a) single-platform OCI image, (b) two-platform OCI index,
(c) OCI index whose first entry has no platform, (d) Docker schema2 image,
(e) Docker manifest list of two schema2 images.
Every RPC's answer is compared with the bytes we pushed and with what skopeo
reads back from the registry.
"""

import concurrent.futures
import hashlib
import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc  # noqa: E402

from fixtures import images, stubs, testing  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.registry import Registry  # noqa: E402

S = stubs.load()
pb = S.registry_pb2
NOT_FOUND_MSG = "image reference not found"
T = 20        # seconds, deadline of a normal RPC
T_BAD = 5     # seconds, deadline of an RPC that must fail fast

ENV = None
REG = None
CAT = None
D = None
_SKOPEO_RAW = {}
_SKOPEO_BLOBS = {}


def setUpModule():
    global ENV, REG, CAT, D
    ENV = testing.Env(prefix="regd-read-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    REG = ENV.enter(Registry(ENV.workdir, auth="none"), "registry")
    CAT = images.seed_all(ENV.workdir, REG.host)
    D = ENV.enter(Daemon(ENV.workdir, insecure_registries=[REG.host]), "regd")


# -- helpers ---------------------------------------------------------------------

def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def skopeo_raw(ref, config=False):
    key = (ref, config)
    if key not in _SKOPEO_RAW:
        _SKOPEO_RAW[key] = images.skopeo_inspect_raw(ref, config=config)
    return _SKOPEO_RAW[key]


def skopeo_blobs(img):
    """Blobs of a single image as `skopeo copy ... dir:` fetched them."""
    if img.digest not in _SKOPEO_BLOBS:
        dest = os.path.join(ENV.workdir, "skopeo-dir-" + img.digest[7:19])
        _SKOPEO_BLOBS[img.digest] = images.skopeo_copy_to_dir(img.digest_ref, dest)
    return _SKOPEO_BLOBS[img.digest]


def platform(os_, arch, variant=""):
    return pb.Platform(os=os_, architecture=arch, variant=variant)


def inspect(ref, plat=None, timeout=T):
    req = pb.InspectRequest(image_ref=ref)
    if plat is not None:
        req.platform.CopyFrom(plat)
    return D.stub.Inspect(req, timeout=timeout)


def get_image(ref, plat=None, timeout=T):
    req = pb.GetImageRequest(image_ref=ref)
    if plat is not None:
        req.platform.CopyFrom(plat)
    return D.stub.GetImage(req, timeout=timeout)


def exists(ref, timeout=T):
    return D.stub.Exists(pb.ExistsRequest(image_ref=ref), timeout=timeout)


def get_descriptor(ref, timeout=T):
    return D.stub.GetDescriptor(pb.GetDescriptorRequest(image_ref=ref), timeout=timeout)


def read_blob(repo, digest, offset=0, timeout=T, stub=None):
    stub = stub or D.stub
    chunks = list(stub.ReadBlob(pb.ReadBlobRequest(repo=repo, digest=digest, offset=offset),
                                timeout=timeout))
    return b"".join(c.data for c in chunks), len(chunks)


def host_repo(img):
    return "%s/%s" % (img.host, img.repo)


def absent_digest():
    return sha(b"this blob was never pushed")


class ReadCase(testing.IntegrationCase):
    def tearDown(self):
        # The daemon must still serve after whatever the test did (errors included).
        self.assertTrue(D.alive(), "regd died:\n" + D.log())
        self.assertTrue(exists(CAT.single.ref).exists, "regd stopped serving after the test")

    def assertSingleManifestResult(self, r, img):
        """r (ManifestResult) describes the single image `img`; checked against skopeo too."""
        raw = skopeo_raw(img.digest_ref)
        self.assertEqual(raw, img.manifest.data)
        parsed = json.loads(raw)
        sk = images.skopeo_inspect(img.digest_ref)
        self.assertEqual(r.schema_version, 2)
        self.assertEqual(r.media_type, img.manifest.media_type)
        self.assertEqual(r.media_type, parsed["mediaType"])
        self.assertEqual(r.digest, img.digest)
        self.assertEqual(r.digest, sk["Digest"])
        self.assertEqual(list(r.layers), [l.digest for l in img.layers])
        self.assertEqual(list(r.layers), sk["Layers"])
        self.assertEqual(r.config, img.config.digest)
        self.assertEqual(r.config, parsed["config"]["digest"])
        self.assertEqual(dict(r.labels), img.labels)
        self.assertEqual(dict(r.labels), sk["Labels"])
        self.assertEqual(len(r.manifests), 0)

    def assertIndexEntries(self, r, idx):
        """r.manifests lists every entry of index `idx`, as skopeo reads it."""
        raw = skopeo_raw(idx.ref)
        self.assertEqual(raw, idx.manifest.data)
        entries = json.loads(raw)["manifests"]
        self.assertEqual(len(r.manifests), len(entries))
        for got, want in zip(r.manifests, entries):
            plat = want.get("platform", {})
            self.assertEqual(got.digest, want["digest"])
            self.assertEqual(got.media_type, want["mediaType"])
            self.assertEqual(got.size, want["size"])
            self.assertEqual(got.os, plat.get("os", ""))
            self.assertEqual(got.architecture, plat.get("architecture", ""))
            self.assertEqual(got.variant, plat.get("variant", ""))
            self.assertEqual(dict(got.annotations), want.get("annotations", {}))

    def assertNotFound(self, fn, *args, **kwargs):
        e = self.assertRpcError(grpc.StatusCode.NOT_FOUND, fn, *args, **kwargs)
        self.assertIn(NOT_FOUND_MSG, e.details())
        return e


# -- Inspect --------------------------------------------------------------------------

class InspectTest(ReadCase):
    def test_single_manifest(self):
        self.assertSingleManifestResult(inspect(CAT.single.ref), CAT.single)

    def test_single_by_digest(self):
        self.assertSingleManifestResult(inspect(CAT.single.digest_ref), CAT.single)

    def test_single_by_tag_and_digest(self):
        ref = "%s/%s:v1@%s" % (REG.host, CAT.single.repo, CAT.single.digest)
        self.assertSingleManifestResult(inspect(ref), CAT.single)

    def test_digest_wins_over_tag(self):
        ref = "%s/%s:no-such-tag@%s" % (REG.host, CAT.single.repo, CAT.single.digest)
        self.assertSingleManifestResult(inspect(ref), CAT.single)

    def test_docker_schema2(self):
        r = inspect(CAT.docker.ref)
        self.assertEqual(r.media_type, images.DOCKER_MANIFEST)
        self.assertSingleManifestResult(r, CAT.docker)

    def test_config_without_labels(self):
        # "{}" (OCI empty config of an artifact) and "Labels": null both mean no labels.
        for img in (CAT.bare, CAT.nolabels):
            with self.subTest(img.repo):
                r = inspect(img.ref)
                self.assertEqual(r.media_type, images.OCI_MANIFEST)
                self.assertEqual(r.digest, sha(skopeo_raw(img.ref)))
                self.assertEqual(r.config, img.config.digest)
                self.assertEqual(list(r.layers), [l.digest for l in img.layers])
                self.assertEqual(dict(r.labels), {})

    def test_platform_on_single_manifest_fails_precondition(self):
        for img in (CAT.single, CAT.docker):
            with self.subTest(img.repo):
                self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION,
                                    inspect, img.ref, platform("linux", "amd64"))

    def test_index_without_platform(self):
        idx = CAT.multi
        r = inspect(idx.ref)
        self.assertEqual(r.schema_version, 2)
        self.assertEqual(r.media_type, images.OCI_INDEX)
        self.assertEqual(r.digest, idx.digest)
        self.assertEqual(r.digest, sha(skopeo_raw(idx.ref)))
        self.assertIndexEntries(r, idx)
        # Labels come from the default child, linux/amd64.
        self.assertEqual(dict(r.labels), idx.child("linux", "amd64").labels)
        self.assertEqual(dict(r.labels),
                         images.skopeo_inspect(idx.child("linux", "amd64").digest_ref)["Labels"])
        self.assertEqual(list(r.layers), [])
        self.assertEqual(r.config, "")

    def test_index_by_digest(self):
        r = inspect(CAT.multi.digest_ref)
        self.assertEqual(r.digest, CAT.multi.digest)
        self.assertIndexEntries(r, CAT.multi)

    def test_index_with_platform_amd64(self):
        child = CAT.multi.child("linux", "amd64")
        self.assertSingleManifestResult(inspect(CAT.multi.ref, platform("linux", "amd64")), child)

    def test_index_with_platform_arm64_v8(self):
        child = CAT.multi.child("linux", "arm64", "v8")
        r = inspect(CAT.multi.ref, platform("linux", "arm64", "v8"))
        self.assertSingleManifestResult(r, child)
        self.assertNotEqual(dict(r.labels), CAT.multi.child("linux", "amd64").labels)

    def test_index_with_platform_arm64_without_variant_matches_v8(self):
        # Docker/containerd semantics: a request without a variant matches arm64/v8.
        child = CAT.multi.child("linux", "arm64", "v8")
        self.assertSingleManifestResult(inspect(CAT.multi.ref, platform("linux", "arm64")), child)

    def test_index_with_non_matching_platform(self):
        for plat in (platform("linux", "s390x"), platform("windows", "amd64"),
                     platform("linux", "arm64", "v7")):
            with self.subTest(plat=str(plat)):
                e = self.assertRpcError(grpc.StatusCode.NOT_FOUND, inspect, CAT.multi.ref, plat)
                self.assertIn(plat.architecture, e.details(), "NOT_FOUND should name the platform")

    def test_index_entry_without_platform(self):
        idx = CAT.noplat
        r = inspect(idx.ref)
        self.assertEqual(r.media_type, images.OCI_INDEX)
        self.assertEqual(r.digest, idx.digest)
        self.assertIndexEntries(r, idx)
        self.assertEqual(r.manifests[0].os, "")
        self.assertEqual(r.manifests[0].architecture, "")
        # No linux/amd64 entry: labels come from the first entry (the one without platform).
        self.assertEqual(dict(r.labels), idx.children[0].labels)
        self.assertEqual(list(r.layers), [])
        self.assertEqual(r.config, "")

    def test_index_entry_without_platform_matches_nothing(self):
        # The platform-less child's config says linux/s390x, but its index entry
        # has no platform, so a request for linux/s390x matches nothing.
        e = self.assertRpcError(grpc.StatusCode.NOT_FOUND, inspect, CAT.noplat.ref,
                                platform("linux", "s390x"))
        self.assertIn("s390x", e.details())
        e = self.assertRpcError(grpc.StatusCode.NOT_FOUND, inspect, CAT.noplat.ref,
                                platform("linux", "amd64"))
        self.assertIn("amd64", e.details())

    def test_index_with_entry_without_platform_selects_arm64(self):
        child = CAT.noplat.child("linux", "arm64", "v8")
        r = inspect(CAT.noplat.ref, platform("linux", "arm64", "v8"))
        self.assertSingleManifestResult(r, child)

    def test_child_by_digest(self):
        for child in all_children():
            with self.subTest(child.digest):
                self.assertSingleManifestResult(inspect(child.digest_ref), child)

    def test_docker_manifest_list(self):
        lst = CAT.dlist
        r = inspect(lst.ref)
        self.assertEqual(r.media_type, images.DOCKER_LIST)
        self.assertEqual(r.digest, lst.digest)
        self.assertIndexEntries(r, lst)
        self.assertEqual(dict(r.labels), lst.child("linux", "amd64").labels)
        self.assertEqual(list(r.layers), [])
        self.assertEqual(r.config, "")

    def test_docker_manifest_list_with_platform(self):
        for plat, child in ((platform("linux", "arm", "v7"), CAT.dlist.child("linux", "arm", "v7")),
                            (platform("linux", "amd64"), CAT.dlist.child("linux", "amd64"))):
            with self.subTest(plat.architecture):
                r = inspect(CAT.dlist.ref, plat)
                self.assertEqual(r.media_type, images.DOCKER_MANIFEST)
                self.assertSingleManifestResult(r, child)

    def test_absent(self):
        for ref in absent_refs():
            with self.subTest(ref):
                self.assertNotFound(inspect, ref)
                self.assertNotFound(inspect, ref, platform("linux", "amd64"))


def all_children():
    return CAT.multi.children + CAT.noplat.children + CAT.dlist.children


def absent_refs():
    h = REG.host
    return [
        "%s/%s:no-such-tag" % (h, CAT.single.repo),
        "%s/test/no-such-repo:v1" % h,
        "%s/no-such-repo" % h,  # implicit :latest
        "%s/%s@%s" % (h, CAT.single.repo, absent_digest()),
        "%s/test/no-such-repo@%s" % (h, CAT.single.digest),
        "%s/%s@%s" % (h, CAT.multi.repo, CAT.single.digest),  # digest of another repo
    ]


# -- GetImage ----------------------------------------------------------------------------

class GetImageTest(ReadCase):
    def assertImage(self, got, img):
        raw = skopeo_raw(img.digest_ref)
        raw_config = skopeo_raw(img.digest_ref, config=True)
        self.assertEqual(got.raw_manifest, raw, "raw_manifest differs from skopeo inspect --raw")
        self.assertEqual(got.raw_manifest, img.manifest.data)
        self.assertEqual(got.raw_config, raw_config,
                         "raw_config differs from skopeo inspect --raw --config")
        self.assertEqual(got.raw_config, img.config.data)
        self.assertEqual(got.descriptor.digest, sha(got.raw_manifest))
        self.assertEqual(got.descriptor.digest, img.digest)
        self.assertEqual(got.descriptor.size, len(raw))
        self.assertEqual(got.descriptor.media_type, img.manifest.media_type)
        self.assertEqual(got.config.digest, sha(got.raw_config))
        self.assertEqual(got.config.digest, img.config.digest)
        self.assertEqual(got.config.size, img.config.size)
        self.assertEqual(got.config.media_type, img.config.media_type)
        parsed = json.loads(raw)
        self.assertEqual(len(got.layers), len(parsed["layers"]))
        for g, want in zip(got.layers, parsed["layers"]):
            self.assertEqual(g.digest, want["digest"])
            self.assertEqual(g.size, want["size"])
            self.assertEqual(g.media_type, want["mediaType"])
            self.assertEqual(dict(g.annotations), want.get("annotations", {}))
        self.assertEqual([l.digest for l in got.layers], [l.digest for l in img.layers])

    def test_single(self):
        self.assertImage(get_image(CAT.single.ref), CAT.single)

    def test_single_by_digest(self):
        self.assertImage(get_image(CAT.single.digest_ref), CAT.single)

    def test_artifact_with_empty_config(self):
        got = get_image(CAT.bare.ref)
        self.assertEqual(got.raw_config, b"{}")
        self.assertEqual(got.config.media_type, "application/vnd.oci.empty.v1+json")
        self.assertImage(got, CAT.bare)
        self.assertImage(get_image(CAT.nolabels.ref), CAT.nolabels)

    def test_docker_schema2(self):
        got = get_image(CAT.docker.ref)
        self.assertEqual(got.descriptor.media_type, images.DOCKER_MANIFEST)
        self.assertEqual(got.config.media_type, images.DOCKER_CONFIG)
        self.assertEqual({l.media_type for l in got.layers}, {images.DOCKER_LAYER_GZIP})
        self.assertImage(got, CAT.docker)

    def test_index_needs_platform(self):
        for idx in (CAT.multi, CAT.noplat, CAT.dlist):
            with self.subTest(idx.repo):
                self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, get_image, idx.ref)
                self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, get_image,
                                    idx.digest_ref)

    def test_platform_on_single_manifest_fails_precondition(self):
        self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, get_image, CAT.single.ref,
                            platform("linux", "amd64"))

    def test_index_with_platform(self):
        for plat, child in ((platform("linux", "amd64"), CAT.multi.child("linux", "amd64")),
                            (platform("linux", "arm64", "v8"),
                             CAT.multi.child("linux", "arm64", "v8")),
                            (platform("linux", "arm64", "v8"),
                             CAT.noplat.child("linux", "arm64", "v8"))):
            idx = CAT.multi if child in CAT.multi.children else CAT.noplat
            with self.subTest(idx=idx.repo, plat=plat.architecture):
                self.assertImage(get_image(idx.ref, plat), child)

    def test_index_with_non_matching_platform(self):
        e = self.assertRpcError(grpc.StatusCode.NOT_FOUND, get_image, CAT.multi.ref,
                                platform("linux", "ppc64le"))
        self.assertIn("ppc64le", e.details())
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, get_image, CAT.noplat.ref,
                            platform("linux", "s390x"))

    def test_child_by_digest(self):
        for child in all_children():
            with self.subTest(child.digest):
                self.assertImage(get_image(child.digest_ref), child)

    def test_docker_manifest_list(self):
        self.assertRpcError(grpc.StatusCode.FAILED_PRECONDITION, get_image, CAT.dlist.ref)
        child = CAT.dlist.child("linux", "arm", "v7")
        got = get_image(CAT.dlist.ref, platform("linux", "arm", "v7"))
        self.assertEqual(got.descriptor.media_type, images.DOCKER_MANIFEST)
        self.assertImage(got, child)

    def test_absent(self):
        for ref in absent_refs():
            with self.subTest(ref):
                self.assertNotFound(get_image, ref)


# -- Exists ----------------------------------------------------------------------------------

class ExistsTest(ReadCase):
    def test_present(self):
        refs = [CAT.single.ref, CAT.single.digest_ref, CAT.multi.ref, CAT.multi.digest_ref,
                CAT.noplat.ref, CAT.docker.ref, CAT.docker.digest_ref, CAT.dlist.ref,
                CAT.dlist.digest_ref]
        refs += [c.digest_ref for c in all_children()]
        for ref in refs:
            with self.subTest(ref):
                images.skopeo_inspect_raw(ref)  # skopeo agrees it is there
                self.assertTrue(exists(ref).exists)

    def test_absent(self):
        for ref in absent_refs():
            with self.subTest(ref):
                with self.assertRaises(RuntimeError, msg="skopeo found %s" % ref):
                    images.skopeo_inspect_raw(ref)
                self.assertFalse(exists(ref).exists)


# -- GetDescriptor ------------------------------------------------------------------------------

class GetDescriptorTest(ReadCase):
    def assertDescriptorOf(self, d, ref, obj):
        raw = skopeo_raw(ref)
        self.assertEqual(raw, obj.manifest.data)
        self.assertEqual(d.digest, sha(raw))
        self.assertEqual(d.size, len(raw))
        self.assertEqual(d.media_type, json.loads(raw)["mediaType"])
        self.assertEqual(d.media_type, obj.manifest.media_type)

    def test_by_tag(self):
        for obj in (CAT.single, CAT.multi, CAT.noplat, CAT.docker, CAT.dlist):
            with self.subTest(obj.ref):
                self.assertDescriptorOf(get_descriptor(obj.ref), obj.ref, obj)

    def test_by_digest(self):
        objs = [CAT.single, CAT.multi, CAT.docker, CAT.dlist] + all_children()
        for obj in objs:
            with self.subTest(obj.digest_ref):
                self.assertDescriptorOf(get_descriptor(obj.digest_ref), obj.digest_ref, obj)

    def test_absent(self):
        for ref in absent_refs():
            with self.subTest(ref):
                self.assertNotFound(get_descriptor, ref)


# -- ReadBlob -------------------------------------------------------------------------------------

def all_single_images():
    return [CAT.single, CAT.docker, CAT.bare, CAT.nolabels] + all_children()


class ReadBlobTest(ReadCase):
    def test_whole_blobs(self):
        for img in all_single_images():
            from_skopeo = skopeo_blobs(img)
            for blob in img.blobs():
                with self.subTest(repo=img.repo, digest=blob.digest):
                    data, _ = read_blob(host_repo(img), blob.digest)
                    self.assertEqual(len(data), blob.size)
                    self.assertEqual(data, blob.data)
                    self.assertEqual(data, from_skopeo[blob.digest])

    def test_config_matches_skopeo(self):
        for img in all_single_images():
            with self.subTest(img.digest_ref):
                data, _ = read_blob(host_repo(img), img.config.digest)
                self.assertEqual(data, skopeo_raw(img.digest_ref, config=True))

    def test_large_blob_streams(self):
        blob = max(CAT.single.layers, key=lambda b: b.size)
        self.assertGreater(blob.size, 3 * 1024 * 1024)
        data, n = read_blob(host_repo(CAT.single), blob.digest)
        self.assertEqual(sha(data), blob.digest)
        self.assertEqual(data, blob.data)
        # gRPC's default max message is 4 MiB; a 3 MiB blob in one message is legal
        # but the stream should chunk; report the count for the record.
        sys.stderr.write("[large blob: %d bytes in %d chunks] " % (len(data), n))

    def test_from_offset(self):
        img = CAT.single
        big = max(img.layers, key=lambda b: b.size)
        for blob, offset in ((big, 1), (big, 1000000), (big, big.size - 1),
                             (img.config, 1), (img.config, img.config.size // 2),
                             (img.layers[1], 7)):
            with self.subTest(digest=blob.digest, offset=offset):
                data, _ = read_blob(host_repo(img), blob.digest, offset=offset)
                self.assertEqual(len(data), blob.size - offset)
                self.assertEqual(data, blob.data[offset:])

    def test_docker_repo_blobs(self):
        img = CAT.docker
        for blob in img.blobs():
            with self.subTest(blob.digest):
                self.assertEqual(read_blob(host_repo(img), blob.digest)[0], blob.data)
                self.assertEqual(read_blob(host_repo(img), blob.digest, offset=3)[0],
                                 blob.data[3:])

    def test_absent_blob(self):
        for repo, digest in ((host_repo(CAT.single), absent_digest()),
                             ("%s/test/no-such-repo" % REG.host, CAT.single.config.digest)):
            with self.subTest(repo=repo, digest=digest):
                self.assertNotFound(read_blob, repo, digest)

    def test_bad_arguments(self):
        h = REG.host
        cases = [
            (host_repo(CAT.single), ""),
            (host_repo(CAT.single), "sha256:short"),
            (host_repo(CAT.single), "not-a-digest"),
            (host_repo(CAT.single), "sha256:" + "G" * 64),
            ("", CAT.single.config.digest),
            ("%s/UPPER/case" % h, CAT.single.config.digest),
            ("%s/a//b" % h, CAT.single.config.digest),
        ]
        for repo, digest in cases:
            with self.subTest(repo=repo, digest=digest):
                self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, read_blob, repo, digest,
                                    timeout=T_BAD)
                self.assertTrue(exists(CAT.single.ref).exists)

    def test_offset_at_end(self):
        # Nothing left to read: an empty stream, or OUT_OF_RANGE. Never a retryable error.
        blob = CAT.single.config
        try:
            data, _ = read_blob(host_repo(CAT.single), blob.digest, offset=blob.size,
                                timeout=T_BAD)
        except grpc.RpcError as e:
            self.assertIn(e.code(), (grpc.StatusCode.OUT_OF_RANGE,
                                     grpc.StatusCode.INVALID_ARGUMENT),
                          "offset == size: %s %s" % (e.code().name, e.details()))
        else:
            self.assertEqual(data, b"")

    def test_offset_past_end(self):
        blob = CAT.single.config
        self.assertRpcError((grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.INVALID_ARGUMENT),
                            read_blob, host_repo(CAT.single), blob.digest,
                            offset=blob.size + 10, timeout=T_BAD)

    def test_cancel_mid_stream(self):
        big = max(CAT.single.layers, key=lambda b: b.size)
        it = D.stub.ReadBlob(pb.ReadBlobRequest(repo=host_repo(CAT.single), digest=big.digest),
                             timeout=T)
        first = next(it)
        self.assertEqual(first.data, big.data[:len(first.data)])
        it.cancel()
        with self.assertRaises(grpc.RpcError) as cm:
            for _ in it:
                pass
        self.assertEqual(cm.exception.code(), grpc.StatusCode.CANCELLED)
        # tearDown checks the daemon still serves.

    def test_deadline_mid_stream(self):
        big = max(CAT.single.layers, key=lambda b: b.size)
        it = D.stub.ReadBlob(pb.ReadBlobRequest(repo=host_repo(CAT.single), digest=big.digest),
                             timeout=0.5)
        next(it)
        time.sleep(0.7)  # stop reading; the deadline passes with the stream open
        with self.assertRaises(grpc.RpcError) as cm:
            for _ in it:
                pass
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # tearDown checks the daemon still serves.

    def test_negative_offset(self):
        self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, read_blob, host_repo(CAT.single),
                            CAT.single.config.digest, offset=-1, timeout=T_BAD)


# -- Corrupted content ---------------------------------------------------------------------------

class CorruptionTest(ReadCase):
    """Bytes that do not match their digest must fail with DATA_LOSS (never be returned)."""

    @classmethod
    def setUpClass(cls):
        # An image of its own (blobs are shared by digest across repos in the store).
        cls.img = images.build_image("corrupt", {"org.example.corrupt": "yes"},
                                     layer_sizes=(700 * 1024,))
        images.push(cls.img, ENV.workdir, REG.host, "test/corrupt", "v1")
        cls.layer = cls.img.layers[0]
        for blob, pos in ((cls.img.config, 5), (cls.layer, cls.layer.size - 3)):
            path = REG.blob_data_path(blob.digest)
            with open(path, "r+b") as f:
                f.seek(pos)
                b = f.read(1)
                f.seek(pos)
                f.write(bytes([b[0] ^ 0x01]))

    def test_read_blob_from_zero_is_data_loss(self):
        for blob in (self.img.config, self.layer):
            with self.subTest(blob.digest):
                self.assertRpcError(grpc.StatusCode.DATA_LOSS, read_blob, host_repo(self.img),
                                    blob.digest)

    def test_read_blob_from_offset_is_not_verified(self):
        data, _ = read_blob(host_repo(self.img), self.layer.digest, offset=10)
        self.assertEqual(len(data), self.layer.size - 10)
        self.assertNotEqual(data, self.layer.data[10:])  # served as stored, corrupted

    def test_get_image_verifies_config(self):
        self.assertRpcError(grpc.StatusCode.DATA_LOSS, get_image, self.img.ref)

    def test_inspect_verifies_config(self):
        self.assertRpcError(grpc.StatusCode.DATA_LOSS, inspect, self.img.ref)


# -- Registry requests per RPC ------------------------------------------------------------------------

class RequestCountTest(ReadCase):
    """What each RPC asks of the registry, read from the registry's access log."""

    def requests_of(self, fn, repo):
        exists(CAT.single.ref)  # warm up: ping and any auth are done
        mark = REG.log_size()
        fn()
        log = REG.access_log_since(mark)
        return [(m, p) for m, p, _ in log if p.startswith("/v2/%s/" % repo)], log

    def test_exists_is_one_head(self):
        for ref in (CAT.single.ref, CAT.multi.ref, absent_refs()[0]):
            with self.subTest(ref):
                reqs, log = self.requests_of(lambda: exists(ref), CAT.single.repo
                                             if CAT.single.repo in ref else CAT.multi.repo)
                self.assertEqual([m for m, _ in reqs], ["HEAD"], log)

    def test_get_descriptor_is_one_head(self):
        reqs, log = self.requests_of(lambda: get_descriptor(CAT.single.ref), CAT.single.repo)
        self.assertEqual([m for m, _ in reqs], ["HEAD"], log)

    def test_inspect_gets_each_manifest_once(self):
        # Manifest GETs count against pull limits on Docker Hub.
        reqs, log = self.requests_of(lambda: inspect(CAT.single.ref), CAT.single.repo)
        manifest_gets = [p for m, p in reqs if m == "GET" and "/manifests/" in p]
        self.assertEqual(len(manifest_gets), 1, log)

    def test_get_image_gets_each_manifest_once(self):
        reqs, log = self.requests_of(lambda: get_image(CAT.single.ref), CAT.single.repo)
        manifest_gets = [p for m, p in reqs if m == "GET" and "/manifests/" in p]
        self.assertEqual(len(manifest_gets), 1, log)


# -- Bad references --------------------------------------------------------------------------------

def bad_refs():
    h = REG.host
    # Note: "UPPER/case" is NOT here on purpose. In the docker grammar an
    # upper-case first component is a registry host (distribution's
    # splitDockerDomain), so it is a valid reference to a registry named UPPER.
    return [
        "",
        "UPPER",           # docker.io/library/UPPER: repository names are lower case
        "lower/UPPER",
        "a:b:c",
        "repo@sha256:short",
        "host:port/",
        "-bad",
        "a//b",
        "%s/UPPER/case" % h,
        "%s/test/single:" % h,
        "%s/test/single@" % h,
        "%s/test//single" % h,
        "%s/test/single/" % h,
        "%s/-test/single" % h,
        "%s/test/single:bad tag" % h,
        "%s/test/single:%s" % (h, "t" * 129),
        "%s/test/single@sha256:%s" % (h, "a" * 63),
        "%s/test/single@sha256:%s" % (h, "g" * 64),
        "%s/test/single:.tag" % h,
        "%s/test/single:-tag" % h,
        "%s/test/a___b" % h,
        "%s/test/a..b" % h,
        "%s/test/a_-b" % h,
        "%s/TEST/single" % h,
        "%s/%s" % (h, "a" * 300),  # name longer than 255 characters
    ]


def valid_absent_refs():
    """Unusual but valid references (nothing is pushed there): NOT_FOUND / exists=false."""
    h = REG.host
    return [
        "%s/test/a__b" % h,
        "%s/test/a--b" % h,
        "%s/test/a.b_c-d" % h,
        "%s/test/x:%s" % (h, "T" * 128),
        "%s/test/x:_tag" % h,
        "%s/%s" % (h, "/".join(["a"] * 10)),
        "%s/test/x:v1@%s" % (h, absent_digest()),
    ]


class BadRefTest(ReadCase):
    def test_valid_unusual_refs_are_not_rejected(self):
        for ref in valid_absent_refs():
            with self.subTest(ref):
                self.assertFalse(exists(ref, timeout=T_BAD).exists)
                self.assertNotFound(get_descriptor, ref, timeout=T_BAD)

    def test_invalid_argument(self):
        calls = (("Inspect", inspect), ("GetImage", get_image), ("Exists", exists),
                 ("GetDescriptor", get_descriptor))
        for ref in bad_refs():
            for name, fn in calls:
                with self.subTest(rpc=name, ref=ref):
                    self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, fn, ref,
                                        timeout=T_BAD)
                    # ...and the daemon still serves.
                    self.assertTrue(exists(CAT.single.ref, timeout=T).exists)


# -- Concurrency and the unix socket listener ---------------------------------------------------------

class ConcurrentReadTest(ReadCase):
    def test_parallel_mixed_reads(self):
        big = max(CAT.single.layers, key=lambda b: b.size)
        jobs = []
        for i in range(24):
            k = i % 4
            if k == 0:
                jobs.append(lambda: inspect(CAT.multi.ref).digest == CAT.multi.digest)
            elif k == 1:
                jobs.append(lambda: get_image(CAT.docker.ref).raw_manifest == CAT.docker.manifest.data)
            elif k == 2:
                jobs.append(lambda: read_blob(host_repo(CAT.single), big.digest)[0] == big.data)
            else:
                jobs.append(lambda: not exists(absent_refs()[0]).exists)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda f: f(), jobs))
        self.assertEqual(results, [True] * len(jobs))


class UnixSocketTest(ReadCase):
    def test_reads_over_unix_socket(self):
        with Daemon(ENV.workdir, insecure_registries=[REG.host], listen="unix") as ud:
            ENV.logs.append(("regd-unix", ud.stderr_path))
            self.assertTrue(ud.address.startswith("unix:"), ud.address)
            self.assertTrue(os.path.exists(ud.address[len("unix:"):]))
            stub = ud.stub
            r = stub.Inspect(pb.InspectRequest(image_ref=CAT.single.ref), timeout=T)
            self.assertEqual(r.digest, CAT.single.digest)
            self.assertTrue(stub.Exists(pb.ExistsRequest(image_ref=CAT.multi.ref),
                                        timeout=T).exists)
            self.assertFalse(stub.Exists(pb.ExistsRequest(image_ref=absent_refs()[0]),
                                         timeout=T).exists)
            data, _ = read_blob(host_repo(CAT.single), CAT.single.config.digest, stub=stub)
            self.assertEqual(data, CAT.single.config.data)
            with self.assertRaises(grpc.RpcError) as cm:
                stub.Inspect(pb.InspectRequest(image_ref="a//b"), timeout=T_BAD)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


if __name__ == "__main__":
    testing.main("test_read")
