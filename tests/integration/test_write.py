#!/usr/bin/python3
"""Integration tests for regd's write RPCs (WriteLayer, PushImage, PushIndex).

Run:  REGD_BIN=build/server/regd /usr/bin/python3 tests/integration/test_write.py [-k name]

Two docker-registry 2.8 instances: one without auth ("plain") and one with
bearer-token auth ("token", fixtures/token_issuer.py). A byte-counting
fixtures/fault_proxy.py sits in front of the plain one for the tests that count
what went over the wire (monolithic vs chunked, shared uploads, pushing the
same image twice, cancellation). One daemon serves everything, started with
--chunk_size=8MiB so that blobs up to 8 MiB go up in one PUT and larger ones in
8 MiB PATCHes. Everything pushed is read back with skopeo or plain HTTP.
"""

import itertools
import json
import os
import signal
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
from fixtures.uploads import (Stream, StreamChecks, call_async, head_blob,  # noqa: E402
                              random_bytes, retry_config, sha256, skopeo_copy_to_oci, upload_sessions,
                              write_file)

S = stubs.load()
pb = S.registry_pb2
T = 60        # seconds, deadline of a write RPC
T_BAD = 10    # seconds, deadline of an RPC that must fail fast
MiB = 1 << 20
CHUNK = 8 * MiB
TOKEN_USER = ("bob", "builder")

ENV = None
REG = None     # plain registry
TREG = None    # token-auth registry
ISSUER = None
PROXY = None   # byte-counting proxy in front of REG
D = None
ALLOWED = None
OUTSIDE = None
TARGETS = {}
_seq = itertools.count(1)


class Target:
    """Where a test pushes: the name regd is given, and how to check the registry directly."""

    def __init__(self, name, reg, host=None, creds=None, issuer=None):
        self.name = name
        self.reg = reg
        self.host = host or reg.host   # what references name
        self.creds = creds
        self.issuer = issuer

    def ref(self, repo, tag_or_digest):
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return "%s/%s%s%s" % (self.host, repo, sep, tag_or_digest)

    def direct_ref(self, repo, tag_or_digest):
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return "%s/%s%s%s" % (self.reg.host, repo, sep, tag_or_digest)

    def _headers(self, repo):
        if self.issuer is None:
            return {}
        token = self.issuer.make_token(self.creds[0], ["repository:%s:pull" % repo])
        return {"Authorization": "Bearer " + token}

    def head_blob(self, repo, digest):
        h = self._headers(repo)
        return head_blob(self.reg.url, repo, digest, h["Authorization"][7:] if h else None)

    def get_blob(self, repo, digest):
        status, _, body = util.http_get("%s/v2/%s/blobs/%s" % (self.reg.url, repo, digest),
                                        headers=self._headers(repo))
        return status, body

    def raw(self, repo, tag_or_digest):
        return images.skopeo_inspect_raw(self.direct_ref(repo, tag_or_digest), creds=self.creds)

    def manifest_status(self, repo, tag):
        h = dict(self._headers(repo))
        h["Accept"] = ",".join([images.OCI_MANIFEST, images.OCI_INDEX, images.DOCKER_MANIFEST,
                                images.DOCKER_LIST])
        status, _, _ = util.http_get("%s/v2/%s/manifests/%s" % (self.reg.url, repo, tag),
                                     headers=h, method="HEAD")
        return status


def setUpModule():
    global ENV, REG, TREG, ISSUER, PROXY, D, ALLOWED, OUTSIDE
    ENV = testing.Env(prefix="regd-write-")
    testing.ACTIVE_ENVS.append(ENV)
    unittest.addModuleCleanup(ENV.close)
    ALLOWED = os.path.join(ENV.workdir, "allowed")
    OUTSIDE = os.path.join(ENV.workdir, "outside")
    os.makedirs(ALLOWED)
    os.makedirs(OUTSIDE)
    ISSUER = ENV.enter(TokenIssuer(os.path.join(ENV.workdir, "issuer"),
                                   users=dict([TOKEN_USER])))
    REG = ENV.enter(Registry(ENV.workdir, auth="none"), "registry-plain")
    TREG = ENV.enter(Registry(ENV.workdir, auth="token", token_issuer=ISSUER), "registry-token")
    PROXY = ENV.enter(FaultProxy(REG.host))
    D = ENV.enter(Daemon(ENV.workdir, insecure_registries=[REG.host, TREG.host, PROXY.host],
                         allowed_paths=[ALLOWED], auths={TREG.host: TOKEN_USER},
                         extra_args=["--chunk_size=%d" % CHUNK], rpc_timeout=T), "regd")
    TARGETS["plain"] = Target("plain", REG)
    TARGETS["token"] = Target("token", TREG, creds=TOKEN_USER, issuer=ISSUER)
    TARGETS["proxy"] = Target("proxy", REG, host=PROXY.host)
    # A canary the tearDowns ask Exists about.
    images.push(images.build_image("canary", {"k": "v"}, layer_sizes=(100,)), ENV.workdir,
                REG.host, "canary/img", "v1")


# -- helpers ---------------------------------------------------------------------------

def retry():
    return retry_config(pb, initial_delay=0.05)


def write_layer(repo, layer, timeout=T, retry_cfg=None):
    return Stream(D.stub.WriteLayer(pb.WriteLayerRequest(repo=repo, layer=layer,
                                                         retry=retry_cfg or retry()),
                                    timeout=timeout))


def push_image(ref, layout=None, image=None, ref_name="", timeout=T, concurrency=0):
    req = pb.PushImageRequest(ref=ref, retry=retry(), concurrency=concurrency)
    if layout is not None:
        req.layout.CopyFrom(pb.OciLayout(path=layout, ref_name=ref_name))
    else:
        req.image.CopyFrom(image)
    return Stream(D.stub.PushImage(req, timeout=timeout))


def uniq(name):
    return "%s-%d" % (name, next(_seq))


def write_layout(name, top, ref_name, blobs):
    path = os.path.join(ALLOWED, "layouts", uniq(name))
    images.write_oci_layout(path, top, ref_name, blobs)
    return path


def image_spec(img, docker=False, inline_config=True, annotations=None):
    """An ImageSpec for a built image: config inline, first layer from a file, the rest inline."""
    spec = pb.ImageSpec()
    if inline_config:
        spec.config.CopyFrom(pb.BlobSource(data=img.config.data))
    else:
        spec.config.CopyFrom(pb.BlobSource(path=write_file(
            os.path.join(ALLOWED, "blobs"), uniq("config"), img.config.data)))
    for i, layer in enumerate(img.layers):
        if i == 0:
            p = write_file(os.path.join(ALLOWED, "blobs"), uniq("layer"), layer.data)
            spec.layers.append(pb.BlobSource(path=p))
        else:
            spec.layers.append(pb.BlobSource(data=layer.data))
    if docker:
        spec.media_type = images.DOCKER_MANIFEST
    for k, v in (annotations or {}).items():
        spec.annotations[k] = v
    return spec


class WriteCase(testing.IntegrationCase, StreamChecks):
    def tearDown(self):
        # The daemon must still serve after whatever the test did (errors included).
        self.assertTrue(D.alive(), "regd died:\n" + D.log())
        r = D.stub.Exists(pb.ExistsRequest(image_ref="%s/canary/img:v1" % REG.host), timeout=T_BAD)
        self.assertTrue(r.exists, "regd stopped serving after the test")


# -- WriteLayer on both registries -----------------------------------------------------------

class WriteLayerMixin:
    TARGET = None

    @property
    def t(self):
        return TARGETS[self.TARGET]

    def repo(self, name):
        return "w%s/%s" % (self.TARGET, uniq(name))

    def test_path_uploaded_then_existed(self):
        data = random_bytes(3 * MiB + 17, "path-" + self.TARGET)
        path = write_file(os.path.join(ALLOWED, "blobs"), uniq("path"), data)
        repo = self.repo("layer-path")
        s = write_layer("%s/%s" % (self.t.host, repo), pb.BlobSource(path=path))
        res = self.assertLayerStream(s, len(data), "UPLOADED")
        self.assertEqual(res.descriptor.digest, sha256(data))
        self.assertEqual(res.descriptor.media_type, images.OCI_LAYER_GZIP)
        self.assertEqual(s.retries(), [])
        self.assertEqual(self.t.get_blob(repo, sha256(data)), (200, data))
        again = write_layer("%s/%s" % (self.t.host, repo), pb.BlobSource(path=path))
        res2 = self.assertLayerStream(again, len(data), "EXISTED")
        self.assertEqual(res2.descriptor, res.descriptor)

    def test_inline_digest_and_size_computed(self):
        data = random_bytes(200 * 1024 + 3, "inline-" + self.TARGET)
        repo = self.repo("layer-inline")
        s = write_layer("%s/%s" % (self.t.host, repo), pb.BlobSource(data=data))
        res = self.assertLayerStream(s, len(data), "UPLOADED")
        self.assertEqual(res.descriptor.digest, sha256(data))
        self.assertEqual(res.descriptor.size, len(data))
        self.assertEqual(self.t.get_blob(repo, sha256(data)), (200, data))
        # Given digest and size (right ones) and a media type: EXISTED, echoed back.
        again = write_layer("%s/%s" % (self.t.host, repo),
                            pb.BlobSource(data=data, digest=sha256(data), size=len(data),
                                          media_type="application/vnd.example.thing"))
        res2 = self.assertLayerStream(again, len(data), "EXISTED")
        self.assertEqual(res2.descriptor.digest, sha256(data))
        self.assertEqual(res2.descriptor.media_type, "application/vnd.example.thing")

    def test_given_digest_and_size_uploaded(self):
        data = random_bytes(70000, "given-" + self.TARGET)
        repo = self.repo("layer-given")
        s = write_layer("%s/%s" % (self.t.host, repo),
                        pb.BlobSource(data=data, digest=sha256(data), size=len(data)))
        res = self.assertLayerStream(s, len(data), "UPLOADED")
        self.assertEqual(res.descriptor.digest, sha256(data))
        self.assertEqual(self.t.get_blob(repo, sha256(data)), (200, data))

    def test_mount_from_other_repo(self):
        data = random_bytes(300 * 1024, "mount-" + self.TARGET)
        src, dst = self.repo("mount-src"), self.repo("mount-dst")
        s = write_layer("%s/%s" % (self.t.host, src), pb.BlobSource(data=data))
        self.assertLayerStream(s, len(data), "UPLOADED")
        self.assertEqual(self.t.head_blob(dst, sha256(data)), 404)
        m = write_layer("%s/%s" % (self.t.host, dst),
                        pb.BlobSource(data=data, mount_from="%s/%s" % (self.t.host, src)))
        res = self.assertLayerStream(m, len(data), "MOUNTED")
        self.assertEqual(res.descriptor.digest, sha256(data))
        self.assertEqual(self.t.get_blob(dst, sha256(data)), (200, data))

    def test_mount_from_bare_path_means_this_registry(self):
        data = random_bytes(120 * 1024, "mount-bare-" + self.TARGET)
        src, dst = self.repo("mount-bsrc"), self.repo("mount-bdst")
        self.assertLayerStream(write_layer("%s/%s" % (self.t.host, src), pb.BlobSource(data=data)),
                               len(data), "UPLOADED")
        m = write_layer("%s/%s" % (self.t.host, dst), pb.BlobSource(data=data, mount_from=src))
        self.assertLayerStream(m, len(data), "MOUNTED")
        self.assertEqual(self.t.get_blob(dst, sha256(data)), (200, data))

    def test_mount_from_another_registry_is_invalid(self):
        data = random_bytes(1000, "mount-other-" + self.TARGET)
        dst = self.repo("mount-odst")
        self.assertRpcError(grpc.StatusCode.INVALID_ARGUMENT, lambda: list(D.stub.WriteLayer(
            pb.WriteLayerRequest(repo="%s/%s" % (self.t.host, dst),
                                 layer=pb.BlobSource(data=data,
                                                     mount_from="other.example.com:5000/m/src")),
            timeout=T)))
        self.assertEqual(self.t.head_blob(dst, sha256(data)), 404)

    def test_mount_from_repo_without_the_blob_uploads(self):
        data = random_bytes(50 * 1024, "mount-miss-" + self.TARGET)
        src, dst = self.repo("mount-empty"), self.repo("mount-dst2")
        m = write_layer("%s/%s" % (self.t.host, dst),
                        pb.BlobSource(data=data, mount_from="%s/%s" % (self.t.host, src)))
        self.assertLayerStream(m, len(data), "UPLOADED")
        self.assertEqual(self.t.get_blob(dst, sha256(data)), (200, data))


class WriteLayerPlainTest(WriteLayerMixin, WriteCase):
    TARGET = "plain"


class WriteLayerTokenTest(WriteLayerMixin, WriteCase):
    TARGET = "token"


# -- PushImage / PushIndex on both registries ----------------------------------------------------

class PushMixin:
    TARGET = None

    @property
    def t(self):
        return TARGETS[self.TARGET]

    def repo(self, name):
        return "p%s/%s" % (self.TARGET, uniq(name))

    def assertPulledBack(self, ref_repo, tag, blobs):
        """skopeo copy docker://... oci:... pulls back every blob byte for byte."""
        dest = os.path.join(ENV.workdir, "pulled", uniq(self.TARGET))
        got = skopeo_copy_to_oci(self.t.direct_ref(ref_repo, tag), dest, creds=self.t.creds)
        for b in blobs:
            self.assertIn(b.digest, got, "skopeo did not pull %s (%s)" % (b.digest, b.media_type))
            self.assertEqual(got[b.digest], b.data, b.digest)

    def test_layout_single_image(self):
        img = images.build_image(uniq("layout-single"), {"org.example.w": self.TARGET},
                                 layer_sizes=(300000, 1000),
                                 manifest_annotations={"org.example.note": "w"})
        layout = write_layout("single", img.manifest, "v1", images.all_blobs(img))
        repo = self.repo("layout-single")
        s = push_image(self.t.ref(repo, "v1"), layout=layout, ref_name="v1")
        result, _ = self.assertPushStream(s, {b.digest: b.size for b in img.blobs()}, "UPLOADED")
        self.assertEqual(result.descriptor.digest, img.digest)
        self.assertEqual(result.descriptor.size, img.manifest.size)
        self.assertEqual(result.descriptor.media_type, images.OCI_MANIFEST)
        self.assertEqual(self.t.raw(repo, "v1"), img.manifest.data)
        self.assertPulledBack(repo, "v1", images.all_blobs(img))
        # Pushing the same image again uploads nothing.
        again = push_image(self.t.ref(repo, "v1"), layout=layout, ref_name="v1")
        result2, _ = self.assertPushStream(again, {b.digest: b.size for b in img.blobs()},
                                           "EXISTED")
        self.assertEqual(result2.descriptor.digest, img.digest)

    def test_layout_index_two_platforms(self):
        amd = images.build_image(uniq("lidx-amd"), {"org.example.arch": "amd64"},
                                 {"os": "linux", "architecture": "amd64"}, layer_sizes=(4096,))
        arm = images.build_image(uniq("lidx-arm"), {"org.example.arch": "arm64"},
                                 {"os": "linux", "architecture": "arm64", "variant": "v8"},
                                 layer_sizes=(5000, 10))
        idx = images.build_index([amd, arm], [amd.platform, arm.platform],
                                 annotations={"org.example.index": "w"})
        layout = write_layout("index", idx.manifest, "multi", images.all_blobs(idx))
        repo = self.repo("layout-index")
        s = push_image(self.t.ref(repo, "multi"), layout=layout)  # the only entry
        result, _ = self.assertPushStream(s, {b.digest: b.size for b in idx.blobs()}, "UPLOADED")
        self.assertEqual(result.descriptor.digest, idx.digest)
        self.assertEqual(result.descriptor.media_type, images.OCI_INDEX)
        self.assertEqual(self.t.raw(repo, "multi"), idx.manifest.data)
        for child in (amd, arm):
            self.assertEqual(self.t.raw(repo, child.digest), child.manifest.data)
        self.assertPulledBack(repo, "multi", images.all_blobs(idx))
        insp = D.stub.Inspect(pb.InspectRequest(
            image_ref=self.t.ref(repo, "multi"),
            platform=pb.Platform(os="linux", architecture="arm64", variant="v8")), timeout=T)
        self.assertEqual(insp.digest, arm.digest)
        self.assertEqual(list(insp.layers), [l.digest for l in arm.layers])

    def test_layout_picks_ref_name(self):
        a = images.build_image(uniq("lref-a"), {"n": "a"}, layer_sizes=(100,))
        b = images.build_image(uniq("lref-b"), {"n": "b"}, layer_sizes=(200,))
        path = os.path.join(ALLOWED, "layouts", uniq("two-refs"))
        images.write_oci_layout(path, a.manifest, "a", images.all_blobs(a) + images.all_blobs(b))
        with open(os.path.join(path, "index.json")) as f:
            index = json.load(f)
        index["manifests"].append(b.manifest.descriptor(
            annotations={"org.opencontainers.image.ref.name": "b"}))
        with open(os.path.join(path, "index.json"), "w") as f:
            json.dump(index, f)
        repo = self.repo("layout-refname")
        s = push_image(self.t.ref(repo, "latest"), layout=path, ref_name="b")
        result, _ = self.assertPushStream(s, {x.digest: x.size for x in b.blobs()}, "UPLOADED")
        self.assertEqual(result.descriptor.digest, b.digest)
        self.assertEqual(self.t.raw(repo, "latest"), b.manifest.data)
        # Two entries and no ref_name: which one is meant is unclear.
        bad = push_image(self.t.ref(repo, "x"), layout=path, timeout=T_BAD)
        self.assertEqual(bad.code, grpc.StatusCode.INVALID_ARGUMENT, bad.summary())
        self.assertIn("ref_name", bad.details)
        missing = push_image(self.t.ref(repo, "x"), layout=path, ref_name="nope", timeout=T_BAD)
        self.assertEqual(missing.code, grpc.StatusCode.NOT_FOUND, missing.summary())
        self.assertEqual(self.t.manifest_status(repo, "x"), 404)

    def _check_spec_manifest(self, raw, img, media_type, config_mt, layer_mt, annotations):
        m = json.loads(raw)
        self.assertEqual(m["schemaVersion"], 2)
        self.assertEqual(m["mediaType"], media_type)
        self.assertEqual(m["config"], {"mediaType": config_mt, "digest": img.config.digest,
                                       "size": img.config.size})
        self.assertEqual(m["layers"], [{"mediaType": layer_mt, "digest": l.digest,
                                        "size": l.size} for l in img.layers])
        self.assertEqual(m.get("annotations", {}), annotations)

    def test_image_spec_oci(self):
        img = images.build_image(uniq("spec-oci"), {"org.example.spec": "oci"},
                                 layer_sizes=(150000, 3000, 20))
        repo = self.repo("spec-oci")
        ann = {"org.example.built-by": "regd-test"}
        s = push_image(self.t.ref(repo, "v1"), image=image_spec(img, annotations=ann))
        result, _ = self.assertPushStream(s, {b.digest: b.size for b in img.blobs()}, "UPLOADED")
        raw = self.t.raw(repo, "v1")
        self.assertEqual(result.descriptor.digest, sha256(raw))
        self.assertEqual(result.descriptor.size, len(raw))
        self.assertEqual(result.descriptor.media_type, images.OCI_MANIFEST)
        self._check_spec_manifest(raw, img, images.OCI_MANIFEST, images.OCI_CONFIG,
                                  images.OCI_LAYER_GZIP, ann)
        info = images.skopeo_inspect(self.t.direct_ref(repo, "v1"), creds=self.t.creds)
        self.assertEqual(info["Labels"], img.labels)
        self.assertEqual(info["Architecture"], "amd64")
        self.assertEqual(info["Layers"], [l.digest for l in img.layers])
        dest_blobs = img.blobs() + [images.Blob(raw, images.OCI_MANIFEST)]
        self.assertPulledBack(repo, "v1", dest_blobs)
        # Same image again: nothing uploaded, same digest.
        again = push_image(self.t.ref(repo, "v1"), image=image_spec(img, annotations=ann))
        result2, _ = self.assertPushStream(again, {b.digest: b.size for b in img.blobs()},
                                           "EXISTED")
        self.assertEqual(result2.descriptor.digest, result.descriptor.digest)

    def test_image_spec_docker_schema2(self):
        img = images.build_image(uniq("spec-docker"), {"org.example.spec": "docker"},
                                 layer_sizes=(60000, 500), docker=True)
        repo = self.repo("spec-docker")
        s = push_image(self.t.ref(repo, "v1"), image=image_spec(img, docker=True,
                                                                 inline_config=False))
        result, _ = self.assertPushStream(s, {b.digest: b.size for b in img.blobs()}, "UPLOADED")
        raw = self.t.raw(repo, "v1")
        self.assertEqual(result.descriptor.digest, sha256(raw))
        self.assertEqual(result.descriptor.media_type, images.DOCKER_MANIFEST)
        self._check_spec_manifest(raw, img, images.DOCKER_MANIFEST, images.DOCKER_CONFIG,
                                  images.DOCKER_LAYER_GZIP, {})
        info = images.skopeo_inspect(self.t.direct_ref(repo, "v1"), creds=self.t.creds)
        self.assertEqual(info["Labels"], img.labels)
        dest = os.path.join(ENV.workdir, "pulled", uniq("docker"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        got = images.skopeo_copy_to_dir(self.t.direct_ref(repo, "v1"), dest, creds=self.t.creds)
        for b in img.blobs():
            self.assertEqual(got.get(b.digest), b.data, b.digest)

    def test_image_spec_layer_media_type_and_digest_ref(self):
        img = images.build_image(uniq("spec-mt"), {"x": "y"}, layer_sizes=(1000,))
        spec = image_spec(img)
        spec.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar"
        repo = self.repo("spec-mt")
        # Push once by tag to learn the digest, then by digest (matching): allowed.
        s = push_image(self.t.ref(repo, "v1"), image=spec)
        result, _ = self.assertPushStream(s, {b.digest: b.size for b in img.blobs()})
        raw = self.t.raw(repo, "v1")
        self.assertEqual(json.loads(raw)["layers"][0]["mediaType"],
                         "application/vnd.oci.image.layer.v1.tar")
        by_digest = push_image(self.t.ref(repo, result.descriptor.digest), image=spec)
        self.assertPushStream(by_digest, {b.digest: b.size for b in img.blobs()}, "EXISTED")
        # A ref naming another digest is refused before anything is written.
        wrong = push_image(self.t.ref(repo, sha256(b"something else")), image=spec,
                           timeout=T_BAD)
        self.assertEqual(wrong.code, grpc.StatusCode.INVALID_ARGUMENT, wrong.summary())

    # -- PushIndex --------------------------------------------------------------------

    def _push_platform_images(self, repo, docker=False):
        out = []
        for tag, plat in (("amd64", {"os": "linux", "architecture": "amd64"}),
                          ("arm64", {"os": "linux", "architecture": "arm64", "variant": "v8"})):
            img = images.build_image(uniq("pidx-" + tag), {"org.example.arch": tag}, plat,
                                     layer_sizes=(2000,), docker=docker)
            s = push_image(self.t.ref(repo, tag), image=image_spec(img, docker=docker))
            result, _ = self.assertPushStream(s, {b.digest: b.size for b in img.blobs()})
            raw = self.t.raw(repo, tag)
            self.assertEqual(sha256(raw), result.descriptor.digest)
            out.append((tag, plat, result.descriptor, raw))
        return out

    def _check_index(self, raw, desc, media_type, children, annotations=None):
        self.assertEqual(desc.digest, sha256(raw))
        self.assertEqual(desc.size, len(raw))
        self.assertEqual(desc.media_type, media_type)
        idx = json.loads(raw)
        self.assertEqual(idx["schemaVersion"], 2)
        self.assertEqual(idx["mediaType"], media_type)
        self.assertEqual(len(idx["manifests"]), len(children))
        for entry, (_, plat, d, child_raw) in zip(idx["manifests"], children):
            self.assertEqual(entry["digest"], d.digest)
            self.assertEqual(entry["size"], len(child_raw))
            self.assertEqual(entry["mediaType"], d.media_type)
            self.assertEqual(entry["platform"], plat)
        if annotations is not None:
            self.assertEqual(idx.get("annotations", {}), annotations)

    def test_push_index_with_platforms(self):
        repo = self.repo("pidx")
        children = self._push_platform_images(repo)
        req = pb.PushIndexRequest(ref=self.t.ref(repo, "multi"))
        req.annotations["org.example.index"] = "built"
        for tag, plat, _, _ in children:
            e = req.manifests.add(ref=tag, platform=pb.Platform(
                os=plat["os"], architecture=plat["architecture"], variant=plat.get("variant", "")))
            e.annotations["org.example.tag"] = tag
        desc = D.stub.PushIndex(req, timeout=T)
        raw = self.t.raw(repo, "multi")
        self._check_index(raw, desc, images.OCI_INDEX, children, {"org.example.index": "built"})
        for entry, (tag, _, _, _) in zip(json.loads(raw)["manifests"], children):
            self.assertEqual(entry.get("annotations"), {"org.example.tag": tag})
        info = D.stub.Inspect(pb.InspectRequest(image_ref=self.t.ref(repo, "multi")), timeout=T)
        self.assertEqual(info.digest, desc.digest)
        self.assertEqual([m.digest for m in info.manifests], [c[2].digest for c in children])

    def test_push_index_platform_from_config(self):
        repo = self.repo("pidx-cfg")
        children = self._push_platform_images(repo)
        req = pb.PushIndexRequest(ref=self.t.ref(repo, "multi"))
        # By tag, by digest, and by full reference.
        req.manifests.add(ref=children[0][0])
        req.manifests.add(ref=self.t.ref(repo, children[1][2].digest))
        desc = D.stub.PushIndex(req, timeout=T)
        self._check_index(self.t.raw(repo, "multi"), desc, images.OCI_INDEX, children)

    def test_push_docker_manifest_list(self):
        repo = self.repo("pidx-docker")
        children = self._push_platform_images(repo, docker=True)
        req = pb.PushIndexRequest(ref=self.t.ref(repo, "list"), media_type=images.DOCKER_LIST)
        req.manifests.add(ref=children[0][0])
        req.manifests.add(ref=children[1][0])
        desc = D.stub.PushIndex(req, timeout=T)
        self._check_index(self.t.raw(repo, "list"), desc, images.DOCKER_LIST, children)

    def test_push_index_missing_child(self):
        repo = self.repo("pidx-missing")
        children = self._push_platform_images(repo)
        req = pb.PushIndexRequest(ref=self.t.ref(repo, "multi"))
        req.manifests.add(ref=children[0][0])
        req.manifests.add(ref="no-such-tag", platform=pb.Platform(os="linux", architecture="s390x"))
        err = self.assertRpcError(grpc.StatusCode.NOT_FOUND, D.stub.PushIndex, req, timeout=T_BAD)
        self.assertIn("no-such-tag", err.details())
        self.assertEqual(self.t.manifest_status(repo, "multi"), 404)
        self.assertFalse(D.stub.Exists(pb.ExistsRequest(image_ref=self.t.ref(repo, "multi")),
                                       timeout=T_BAD).exists)
        # An absent digest too.
        req2 = pb.PushIndexRequest(ref=self.t.ref(repo, "multi"))
        req2.manifests.add(ref=sha256(b"no such manifest"),
                           platform=pb.Platform(os="linux", architecture="amd64"))
        self.assertRpcError(grpc.StatusCode.NOT_FOUND, D.stub.PushIndex, req2, timeout=T_BAD)
        self.assertEqual(self.t.manifest_status(repo, "multi"), 404)


class PushPlainTest(PushMixin, WriteCase):
    TARGET = "plain"


class PushTokenTest(PushMixin, WriteCase):
    TARGET = "token"


# -- through the byte-counting proxy ----------------------------------------------------------

class WireTest(WriteCase):
    """What goes over the wire, counted by the proxy in front of the plain registry."""

    def setUp(self):
        PROXY.clear_faults()
        PROXY.reset_counters()

    def tearDown(self):
        PROXY.clear_faults()
        super().tearDown()

    def uploads(self, repo):
        return [e for e in PROXY.log(kind="upload") if e.path.startswith("/v2/%s/" % repo)]

    def test_small_blob_is_one_put(self):
        data = random_bytes(1 * MiB, "mono")
        repo = "wire/" + uniq("mono")
        s = write_layer("%s/%s" % (PROXY.host, repo), pb.BlobSource(data=data))
        self.assertLayerStream(s, len(data), "UPLOADED")
        PROXY.wait_idle()
        ups = self.uploads(repo)
        self.assertEqual([(e.method, e.status) for e in ups], [("POST", 202), ("PUT", 201)],
                         ups)
        self.assertEqual(ups[1].body_fwd, len(data))
        self.assertIn("digest=" + sha256(data).replace(":", "%3A"), ups[1].path)
        self.assertEqual(PROXY.upload_bytes(), len(data))

    def test_big_blob_goes_in_chunks(self):
        size = 40 * MiB + 5
        data = random_bytes(size, "chunked")
        path = write_file(os.path.join(ALLOWED, "blobs"), uniq("big"), data)
        repo = "wire/" + uniq("chunked")
        s = write_layer("%s/%s" % (PROXY.host, repo), pb.BlobSource(path=path))
        res = self.assertLayerStream(s, size, "UPLOADED")
        self.assertEqual(res.descriptor.digest, sha256(data))
        PROXY.wait_idle()
        ups = self.uploads(repo)
        patches = [e for e in ups if e.method == "PATCH"]
        n = (size + CHUNK - 1) // CHUNK
        self.assertEqual(len(patches), n, ups)
        for i, p in enumerate(patches):
            start = i * CHUNK
            end = min(size, start + CHUNK) - 1
            self.assertEqual(p.status, 202, p)
            self.assertEqual(p.body_fwd, end - start + 1, p)
            self.assertEqual(p.header("Content-Range"), "%d-%d" % (start, end), p)
        self.assertEqual([e.method for e in ups], ["POST"] + ["PATCH"] * n + ["PUT"])
        self.assertEqual(ups[-1].body_fwd, 0)
        self.assertEqual(ups[-1].status, 201)
        self.assertEqual(PROXY.upload_bytes(), size)
        completes = sorted({p.complete for p in s.progress()})
        self.assertGreaterEqual(len(completes), 2, "one progress value for a 5-chunk upload")
        status, body = TARGETS["plain"].get_blob(repo, sha256(data))
        self.assertEqual(status, 200)
        self.assertTrue(body == data, "blob read back differs")

    def test_push_same_image_again_uploads_nothing(self):
        img = images.build_image(uniq("again"), {"a": "b"}, layer_sizes=(2 * MiB, 100))
        layout = write_layout("again", img.manifest, "v1", images.all_blobs(img))
        repo = "wire/" + uniq("again")
        ref = "%s/%s:v1" % (PROXY.host, repo)
        first = push_image(ref, layout=layout)
        r1, _ = self.assertPushStream(first, {b.digest: b.size for b in img.blobs()}, "UPLOADED")
        PROXY.wait_idle()
        self.assertEqual(PROXY.upload_bytes(), sum(b.size for b in img.blobs()))
        PROXY.reset_counters()
        second = push_image(ref, layout=layout)
        r2, _ = self.assertPushStream(second, {b.digest: b.size for b in img.blobs()}, "EXISTED")
        self.assertEqual(r2.descriptor.digest, r1.descriptor.digest)
        PROXY.wait_idle()
        self.assertEqual(self.uploads(repo), [])
        self.assertEqual(PROXY.upload_bytes(), 0)
        heads = PROXY.log(method="HEAD", kind="blob")
        self.assertEqual(len(heads), len(img.blobs()), heads)

    def test_concurrent_writes_of_one_blob_send_it_once(self):
        size = 64 * MiB
        data = random_bytes(size, "shared")
        digest = sha256(data)
        path = write_file(os.path.join(ALLOWED, "blobs"), uniq("shared"), data)
        repo = "wire/" + uniq("shared")
        # Slow the leader's PATCHes down so that the others certainly join it.
        PROXY.add_fault("throttle", method="PATCH", times=None, rate=40 * MiB)
        streams = [None] * 8
        start = threading.Barrier(8)

        def one(i):
            start.wait()
            src = pb.BlobSource(path=path)
            if i % 2:
                src.digest, src.size = digest, size   # half of them skip the hashing
            streams[i] = write_layer("%s/%s" % (PROXY.host, repo), src)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(T)
        outcomes = []
        for s in streams:
            res = self.assertLayerStream(s, size)
            self.assertEqual(res.descriptor.digest, digest)
            outcomes.append(res.Outcome.Name(res.outcome))
        PROXY.wait_idle()
        self.assertEqual(outcomes.count("UPLOADED"), 1, outcomes)
        self.assertEqual(outcomes.count("SHARED") + outcomes.count("EXISTED"), 7, outcomes)
        self.assertGreaterEqual(outcomes.count("SHARED"), 1,
                                "no call shared the upload; the test proves nothing: %s" % outcomes)
        self.assertEqual(PROXY.upload_bytes(), size,
                         "bytes sent for 8 concurrent writes of one %d-byte blob" % size)
        self.assertEqual(len([e for e in self.uploads(repo) if e.method == "POST"]), 1)
        self.assertEqual(TARGETS["plain"].head_blob(repo, digest), 200)

    def _cancel_when(self, repo, path, pred, retry_cfg=None):
        """Starts a WriteLayer, cancels it once pred(event) holds; returns (events, time)."""
        call = D.stub.WriteLayer(pb.WriteLayerRequest(
            repo="%s/%s" % (PROXY.host, repo), layer=pb.BlobSource(path=path),
            retry=retry_cfg or retry()), timeout=T)
        seen = []
        cancelled_at = None
        try:
            for ev in call:
                seen.append(ev)
                if cancelled_at is None and pred(ev):
                    cancelled_at = time.monotonic()
                    call.cancel()
        except grpc.RpcError as e:
            self.assertEqual(e.code(), grpc.StatusCode.CANCELLED, e.details())
        self.assertIsNotNone(cancelled_at, "the cancel condition never held: %s" % seen)
        self.assertNotIn("result", [e.WhichOneof("event") for e in seen])
        return seen, cancelled_at

    def _wait_for_delete(self, repo):
        def deleted():
            return any(e.method == "DELETE" and e.finished is not None for e in self.uploads(repo))
        try:
            util.wait_until(deleted, 10, what="DELETE of the upload session")
        except TimeoutError:
            self.fail("no DELETE after cancel: %s" % self.uploads(repo))
        PROXY.wait_idle(settle=0.5)
        return self.uploads(repo)

    def test_registry_limit_is_shared_by_all_calls(self):
        # --registry_concurrency=1: two calls, each pushing a different blob,
        # may not upload to the same registry at the same time.
        d = Daemon(ENV.workdir, insecure_registries=[PROXY.host], allowed_paths=[ALLOWED],
                   extra_args=["--chunk_size=%d" % CHUNK, "--registry_concurrency=1"],
                   rpc_timeout=T).start()
        self.addCleanup(d.kill)
        PROXY.add_fault("throttle", method="PATCH", times=None, rate=32 * MiB)
        repo = "wire/" + uniq("limit")
        calls = []
        for name in ("a", "b"):
            data = random_bytes(3 * CHUNK, "limit-" + name)
            path = write_file(os.path.join(ALLOWED, "blobs"), uniq("limit-" + name), data)
            calls.append(call_async(lambda p=path: list(d.stub.WriteLayer(pb.WriteLayerRequest(
                repo="%s/%s" % (PROXY.host, repo), layer=pb.BlobSource(path=p),
                retry=retry()), timeout=T))))
        for c in calls:
            c.join(T)
            self.assertIsNone(c.exc)
            self.assertEqual(pb.LayerResult.Outcome.Name(c.value[-1].result.outcome), "UPLOADED")
        sessions = {}
        for e in self.uploads(repo):
            if e.session:
                first, last = sessions.get(e.session, (e.started, e.finished))
                sessions[e.session] = (min(first, e.started), max(last, e.finished))
        self.assertEqual(len(sessions), 2, self.uploads(repo))
        (a0, a1), (b0, b1) = sorted(sessions.values())
        self.assertLessEqual(a1, b0 + 0.05, "the two uploads overlapped: %s" % sessions)

    def test_sigterm_mid_upload_cancels_it_deletes_the_session_and_exits_zero(self):
        size = 40 * MiB
        data = random_bytes(size, "sigterm")
        path = write_file(os.path.join(ALLOWED, "blobs"), uniq("sigterm"), data)
        repo = "wire/" + uniq("sigterm")
        PROXY.add_fault("throttle", method="PATCH", times=None, rate=2 * MiB)  # ~20 s in all
        d = Daemon(ENV.workdir, insecure_registries=[PROXY.host], allowed_paths=[ALLOWED],
                   extra_args=["--chunk_size=%d" % CHUNK, "--shutdown_grace=1s"],
                   rpc_timeout=T).start()
        self.addCleanup(d.kill)
        call = d.stub.WriteLayer(pb.WriteLayerRequest(
            repo="%s/%s" % (PROXY.host, repo), layer=pb.BlobSource(path=path), retry=retry()),
            timeout=T)
        for ev in call:
            if ev.WhichOneof("event") == "progress" and ev.progress.complete >= 1 * MiB:
                break
        signalled = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait(15)
        self.assertEqual(rc, 0, d.log())
        self.assertLess(time.monotonic() - signalled, 8, "shutdown took too long:\n" + d.log())
        with self.assertRaises(grpc.RpcError) as cm:
            for ev in call:
                self.assertNotEqual(ev.WhichOneof("event"), "result")
        self.assertIn(cm.exception.code(), (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE))
        ups = self._wait_for_delete(repo)
        self.assertEqual(ups[-1].method, "DELETE", ups)
        self.assertEqual(ups[-1].session, ups[1].session)
        self.assertEqual(TARGETS["plain"].head_blob(repo, sha256(data)), 404)

    def test_cancel_while_waiting_to_retry_deletes_the_session(self):
        size = 20 * MiB
        path = write_file(os.path.join(ALLOWED, "blobs"), uniq("cancel-wait"),
                          random_bytes(size, "cancel-wait"))
        repo = "wire/" + uniq("cancel-wait")
        PROXY.add_fault("status", method="PATCH", nth=2, status=503)
        seen, cancelled_at = self._cancel_when(
            repo, path, lambda ev: ev.WhichOneof("event") == "retry",
            retry_config(pb, initial_delay=30))
        ups = self._wait_for_delete(repo)
        self.assertEqual([e.method for e in ups], ["POST", "PATCH", "PATCH", "DELETE"], ups)
        self.assertLess(ups[-1].started - cancelled_at, 2, "the DELETE came late: %s" % ups)
        self.assertEqual(ups[-1].status, 204, ups)
        self.assertEqual(ups[-1].session, ups[1].session)
        self.assertEqual(upload_sessions(REG, repo), {}, "the registry still holds the session")
        self.assertEqual(PROXY.upload_bytes(), CHUNK)

    def test_cancel_mid_body_stops_and_deletes(self):
        size = 40 * MiB
        data = random_bytes(size, "cancel")
        path = write_file(os.path.join(ALLOWED, "blobs"), uniq("cancel"), data)
        repo = "wire/" + uniq("cancel")
        # Slow enough (4 s a chunk) that the cancel lands inside the first
        # PATCH even when this client reads its events late on a busy machine.
        PROXY.add_fault("throttle", method="PATCH", times=None, rate=2 * MiB)
        seen, cancelled_at = self._cancel_when(
            repo, path,
            lambda ev: ev.WhichOneof("event") == "progress" and ev.progress.complete >= 1 * MiB)
        ups = self._wait_for_delete(repo)
        self.assertEqual([e.method for e in ups], ["POST", "PATCH", "DELETE"], ups)
        # The chunk in flight may end (up to 5 s), so that the session can be
        # deleted: distribution 2.8 refuses any request for a session whose
        # PATCH body was cut, and would keep it.
        self.assertLess(ups[-1].started - cancelled_at, 5 + 2, "the DELETE came late: %s" % ups)
        self.assertEqual(ups[-1].session, ups[1].session)
        self.assertEqual(ups[-1].status, 204, ups)
        # No chunk after the one in flight.
        self.assertLessEqual(PROXY.upload_bytes(), CHUNK)
        self.assertEqual(TARGETS["plain"].head_blob(repo, sha256(data)), 404)
        self.assertEqual(upload_sessions(REG, repo), {}, "the registry still holds the session")

    def test_concurrent_writes_to_two_repos_mount(self):
        size = 24 * MiB
        data = random_bytes(size, "two-repos")
        path = write_file(os.path.join(ALLOWED, "blobs"), uniq("two-repos"), data)
        repos = ["wire/" + uniq("two-a"), "wire/" + uniq("two-b")]
        PROXY.add_fault("throttle", method="PATCH", times=None, rate=16 * MiB)
        first = threading.Thread(target=lambda: out.__setitem__(0, write_layer(
            "%s/%s" % (PROXY.host, repos[0]), pb.BlobSource(path=path))))
        out = [None, None]
        first.start()
        util.wait_until(lambda: PROXY.log(method="PATCH"), 10, what="the first PATCH")
        out[1] = write_layer("%s/%s" % (PROXY.host, repos[1]), pb.BlobSource(path=path))
        first.join(T)
        a = self.assertLayerStream(out[0], size, "UPLOADED")
        b = self.assertLayerStream(out[1], size, "MOUNTED")
        self.assertEqual(a.descriptor, b.descriptor)
        PROXY.wait_idle()
        self.assertEqual(PROXY.upload_bytes(), size, "the second repo must mount, not upload")
        for r in repos:
            self.assertEqual(TARGETS["plain"].head_blob(r, sha256(data)), 200)

    def test_cancelled_leader_hands_over_to_a_waiting_caller(self):
        size = 24 * MiB
        data = random_bytes(size, "handover")
        path = write_file(os.path.join(ALLOWED, "blobs"), uniq("handover"), data)
        repo = "wire/" + uniq("handover")
        rate = PROXY.add_fault("throttle", method="PATCH", times=None, rate=8 * MiB)
        leader = D.stub.WriteLayer(pb.WriteLayerRequest(
            repo="%s/%s" % (PROXY.host, repo), layer=pb.BlobSource(path=path), retry=retry()),
            timeout=T)
        util.wait_until(lambda: PROXY.log(method="PATCH"), 10, what="the leader's first PATCH")
        # The follower hashes the file, then joins the leader's upload: it has
        # joined once it sees the leader's progress (complete > 0).
        joined = threading.Event()

        def on_event(_, ev):
            if ev.WhichOneof("event") == "progress" and ev.progress.complete > 0:
                joined.set()

        follower = call_async(lambda: Stream(D.stub.WriteLayer(pb.WriteLayerRequest(
            repo="%s/%s" % (PROXY.host, repo), layer=pb.BlobSource(path=path), retry=retry()),
            timeout=T), on_event=on_event))
        self.assertTrue(joined.wait(20), "the follower never saw the leader's progress")
        cancelled_at = time.monotonic()
        sent_before = PROXY.upload_bytes()  # whole chunks the leader had sent, and a part
        leader.cancel()
        PROXY.remove_fault(rate)
        follower.join(T)
        self.assertIsNone(follower.exc)
        s = follower.value
        self.assertStreamOk(s)
        res = s.events[-1].result
        self.assertEqual(res.Outcome.Name(res.outcome), "UPLOADED", s.summary())
        self.assertEqual(res.descriptor.digest, sha256(data))
        self.assertEqual(TARGETS["plain"].head_blob(repo, sha256(data)), 200)
        PROXY.wait_idle()
        posts = [e for e in self.uploads(repo) if e.method == "POST"]
        self.assertEqual(len(posts), 2, self.uploads(repo))
        # What the leader had sent, the rest of its chunk in flight at most,
        # then the whole blob once. (Under load the follower may join, and the
        # test cancel, only in the leader's second chunk.)
        self.assertLessEqual(PROXY.upload_bytes(), sent_before + CHUNK + size)
        waited = [e.progress.complete for e, t in zip(s.events, s.times)
                  if t < cancelled_at and e.WhichOneof("event") == "progress"]
        self.assertTrue(waited and max(waited) > 0,
                        "the follower saw none of the leader's progress: it never joined")
        # The follower saw the leader's progress, then its own from 0: progress must
        # not go back without a RetryEvent saying why.
        self.assertLayerStream(s, size, "UPLOADED")

    def test_claiming_another_callers_digest_never_succeeds(self):
        # A caller may name a digest that another caller is uploading. Sharing
        # (or finding the blob there already) must still check the caller's own
        # bytes: a 4-byte blob or a same-size impostor naming the digest fails.
        size = 24 * MiB
        data = random_bytes(size, "claimed")
        digest = sha256(data)
        path = write_file(os.path.join(ALLOWED, "blobs"), uniq("claimed"), data)
        impostor = write_file(os.path.join(ALLOWED, "blobs"), uniq("impostor"),
                              random_bytes(size, "impostor"))
        repo = "wire/" + uniq("claimed")
        target = "%s/%s" % (PROXY.host, repo)
        rate = PROXY.add_fault("throttle", method="PATCH", times=None, rate=8 * MiB)
        leader = call_async(lambda: write_layer(target, pb.BlobSource(path=path)))
        util.wait_until(lambda: PROXY.log(method="PATCH"), 10, what="the leader's first PATCH")
        tiny = write_layer(target, pb.BlobSource(data=b"evil", digest=digest))
        self.assertEqual(tiny.code, grpc.StatusCode.INVALID_ARGUMENT, tiny.summary())
        same_size = write_layer(target, pb.BlobSource(path=impostor, digest=digest, size=size))
        self.assertEqual(same_size.code, grpc.StatusCode.INVALID_ARGUMENT, same_size.summary())
        self.assertIn("hash", same_size.details)
        PROXY.remove_fault(rate)
        leader.join(T)
        self.assertLayerStream(leader.value, size, "UPLOADED")
        # Now the blob is there: EXISTED is no shortcut either.
        for source in (pb.BlobSource(data=b"evil", digest=digest),
                       pb.BlobSource(path=impostor, digest=digest)):
            s = write_layer(target, source)
            self.assertEqual(s.code, grpc.StatusCode.INVALID_ARGUMENT, s.summary())
        self.assertLayerStream(write_layer(target, pb.BlobSource(path=path, digest=digest)),
                               size, "EXISTED")

    def test_cancel_push_image(self):
        img = images.build_image(uniq("cancel-push"), {"a": "b"}, layer_sizes=(12 * MiB, 100))
        layout = write_layout("cancel-push", img.manifest, "v1", images.all_blobs(img))
        repo = "wire/" + uniq("cancel-push")
        PROXY.add_fault("throttle", method="PATCH", times=None, rate=4 * MiB)
        call = D.stub.PushImage(pb.PushImageRequest(
            ref="%s/%s:v1" % (PROXY.host, repo), layout=pb.OciLayout(path=layout),
            retry=retry()), timeout=T)
        cancelled_at = None
        seen = []
        try:
            for ev in call:
                seen.append(ev)
                if (cancelled_at is None and ev.WhichOneof("event") == "progress"
                        and ev.blob_digest == img.layers[0].digest and ev.progress.complete > 0):
                    cancelled_at = time.monotonic()
                    call.cancel()
        except grpc.RpcError as e:
            self.assertEqual(e.code(), grpc.StatusCode.CANCELLED)
        self.assertIsNotNone(cancelled_at, seen)
        self.assertNotIn("result", [e.WhichOneof("event") for e in seen])
        util.wait_until(lambda: any(e.method == "DELETE" for e in self.uploads(repo)), 10,
                        what="DELETE of the big layer's session")
        PROXY.wait_idle(settle=1)
        ups = self.uploads(repo)
        deletes = [e for e in ups if e.method == "DELETE"]
        self.assertLess(deletes[0].started - cancelled_at, 2, ups)
        self.assertEqual(ups[-1].method, "DELETE", "requests after the DELETE: %s" % ups)
        self.assertEqual(PROXY.log(method="PUT", kind="manifest"), [], "a manifest was pushed")
        self.assertEqual(TARGETS["plain"].manifest_status(repo, "v1"), 404)
        self.assertEqual(TARGETS["plain"].head_blob(repo, img.layers[0].digest), 404)


# -- bad input ----------------------------------------------------------------------------------

class BadInputTest(WriteCase):
    def setUp(self):
        PROXY.clear_faults()
        PROXY.reset_counters()

    def assertNothingSent(self, repo):
        PROXY.wait_idle()
        sent = [e for e in PROXY.log() if e.path.startswith("/v2/%s/" % repo)]
        self.assertEqual(sent, [], "requests reached the registry")

    def wl(self, repo, layer, code, timeout=T_BAD):
        s = write_layer("%s/%s" % (PROXY.host, repo), layer, timeout=timeout)
        self.assertEqual(s.code, code, s.summary())
        self.assertNotIn("result", s.kinds())
        return s

    def test_path_outside_allowed(self):
        p = write_file(OUTSIDE, uniq("out"), b"outside")
        s = self.wl("bad/outside", pb.BlobSource(path=p), grpc.StatusCode.PERMISSION_DENIED)
        self.assertIn("allowed", s.details)
        self.assertNothingSent("bad/outside")

    def test_dotdot_escape(self):
        p = write_file(OUTSIDE, uniq("dotdot"), b"outside")
        escape = os.path.join(ALLOWED, "..", "outside", os.path.basename(p))
        self.wl("bad/dotdot", pb.BlobSource(path=escape), grpc.StatusCode.PERMISSION_DENIED)
        self.assertNothingSent("bad/dotdot")

    def test_symlink_escape(self):
        p = write_file(OUTSIDE, uniq("target"), b"secret")
        link = os.path.join(ALLOWED, uniq("link"))
        os.symlink(p, link)
        self.wl("bad/symlink", pb.BlobSource(path=link), grpc.StatusCode.PERMISSION_DENIED)
        dir_link = os.path.join(ALLOWED, uniq("dirlink"))
        os.symlink(OUTSIDE, dir_link)
        self.wl("bad/symlink", pb.BlobSource(path=os.path.join(dir_link, os.path.basename(p))),
                grpc.StatusCode.PERMISSION_DENIED)
        self.assertNothingSent("bad/symlink")

    def test_relative_missing_and_directory_paths(self):
        self.wl("bad/paths", pb.BlobSource(path="allowed/x"), grpc.StatusCode.INVALID_ARGUMENT)
        self.wl("bad/paths", pb.BlobSource(path=os.path.join(ALLOWED, "no-such-file")),
                grpc.StatusCode.NOT_FOUND)
        self.wl("bad/paths", pb.BlobSource(path=ALLOWED), grpc.StatusCode.INVALID_ARGUMENT)
        self.wl("bad/paths", pb.BlobSource(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertNothingSent("bad/paths")

    def test_wrong_digest_commits_nothing(self):
        data = random_bytes(100000, "wrong-digest")
        claimed = sha256(b"not these bytes")
        repo = "bad/" + uniq("digest")
        s = self.wl(repo, pb.BlobSource(data=data, digest=claimed),
                    grpc.StatusCode.INVALID_ARGUMENT, timeout=T)
        self.assertIn("DIGEST_INVALID", s.details)
        self.assertEqual(s.retries(), [], "a wrong digest is not worth retrying")
        self.assertEqual(head_blob(REG.url, repo, claimed), 404)
        self.assertEqual(head_blob(REG.url, repo, sha256(data)), 404)
        PROXY.wait_idle()
        ups = [e for e in PROXY.log(kind="upload")]
        self.assertEqual([e.method for e in ups], ["POST", "PUT", "DELETE"], ups)
        self.assertEqual(ups[1].status, 400, ups)
        # (The DELETE carries the POST's _state, stale once the PUT's body went in, so
        # distribution 2.8 answers 404 and keeps that session; no client can do better.)
        # Chunked: the same refusal at the final PUT, and the session is deleted.
        big = random_bytes(CHUNK + 1000, "wrong-digest-big")
        p = write_file(os.path.join(ALLOWED, "blobs"), uniq("wrong"), big)
        PROXY.reset_counters()
        repo2 = "bad/" + uniq("digest-chunked")
        s = self.wl(repo2, pb.BlobSource(path=p, digest=claimed),
                    grpc.StatusCode.INVALID_ARGUMENT, timeout=T)
        self.assertIn("DIGEST_INVALID", s.details)
        self.assertEqual(head_blob(REG.url, repo2, claimed), 404)
        self.assertEqual(head_blob(REG.url, repo2, sha256(big)), 404)
        PROXY.wait_idle()
        ups = [e for e in PROXY.log(kind="upload")]
        self.assertEqual([e.method for e in ups], ["POST", "PATCH", "PATCH", "PUT", "DELETE"], ups)
        self.assertEqual(ups[-1].status, 204, ups)
        self.assertEqual(upload_sessions(REG, repo2), {})

    def test_malformed_digest_and_wrong_size(self):
        data = b"0123456789"
        self.wl("bad/size", pb.BlobSource(data=data, digest="sha256:1234"),
                grpc.StatusCode.INVALID_ARGUMENT)
        s = self.wl("bad/size", pb.BlobSource(data=data, size=11), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("size", s.details)
        p = write_file(os.path.join(ALLOWED, "blobs"), uniq("size"), data)
        self.wl("bad/size", pb.BlobSource(path=p, size=9), grpc.StatusCode.INVALID_ARGUMENT)
        self.wl("bad/size", pb.BlobSource(data=data, size=-1), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertNothingSent("bad/size")
        self.assertEqual(head_blob(REG.url, "bad/size", sha256(data)), 404)

    def test_empty_and_malformed_repo(self):
        s = write_layer("", pb.BlobSource(data=b"x"), timeout=T_BAD)
        self.assertEqual(s.code, grpc.StatusCode.INVALID_ARGUMENT, s.summary())
        s = write_layer("%s/UPPER/Case" % PROXY.host, pb.BlobSource(data=b"x"), timeout=T_BAD)
        self.assertEqual(s.code, grpc.StatusCode.INVALID_ARGUMENT, s.summary())
        s = Stream(D.stub.WriteLayer(pb.WriteLayerRequest(repo="%s/bad/nolayer" % PROXY.host),
                                     timeout=T_BAD))
        self.assertEqual(s.code, grpc.StatusCode.INVALID_ARGUMENT, s.summary())
        self.assertEqual(PROXY.log(kind="upload"), [])

    def test_inline_data_over_4mib(self):
        data = b"\0" * (4 * MiB + 1)
        s = self.wl("bad/inline", pb.BlobSource(data=data), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("inline", s.details)
        self.assertNothingSent("bad/inline")
        # Exactly 4 MiB is fine.
        ok = write_layer("%s/bad/inline" % PROXY.host, pb.BlobSource(data=data[:4 * MiB]))
        self.assertLayerStream(ok, 4 * MiB, "UPLOADED")

    def test_layout_with_missing_blob(self):
        img = images.build_image(uniq("missing-blob"), {"a": "b"}, layer_sizes=(1000, 2000))
        blobs = [b for b in images.all_blobs(img) if b.digest != img.layers[1].digest]
        layout = write_layout("missing", img.manifest, "v1", blobs)
        repo = "bad/" + uniq("layout")
        s = push_image("%s/%s:v1" % (PROXY.host, repo), layout=layout, timeout=T_BAD)
        self.assertEqual(s.code, grpc.StatusCode.NOT_FOUND, s.summary())
        self.assertIn("missing blob " + img.layers[1].digest, s.details)
        self.assertNothingSent(repo)

    def test_layout_with_corrupt_manifest(self):
        img = images.build_image(uniq("corrupt"), {"a": "b"}, layer_sizes=(100,))
        layout = write_layout("corrupt", img.manifest, "v1", images.all_blobs(img))
        with open(os.path.join(layout, "blobs", "sha256", img.manifest.hex), "ab") as f:
            f.write(b" ")
        repo = "bad/" + uniq("corrupt")
        s = push_image("%s/%s:v1" % (PROXY.host, repo), layout=layout, timeout=T_BAD)
        self.assertEqual(s.code, grpc.StatusCode.DATA_LOSS, s.summary())
        self.assertNothingSent(repo)

    def test_layout_paths(self):
        img = images.build_image(uniq("lp"), {"a": "b"}, layer_sizes=(100,))
        outside = os.path.join(OUTSIDE, uniq("layout"))
        images.write_oci_layout(outside, img.manifest, "v1", images.all_blobs(img))
        repo = "bad/" + uniq("layout-paths")
        s = push_image("%s/%s:v1" % (PROXY.host, repo), layout=outside, timeout=T_BAD)
        self.assertEqual(s.code, grpc.StatusCode.PERMISSION_DENIED, s.summary())
        not_layout = os.path.join(ALLOWED, uniq("not-a-layout"))
        os.makedirs(not_layout)
        s = push_image("%s/%s:v1" % (PROXY.host, repo), layout=not_layout, timeout=T_BAD)
        self.assertEqual(s.code, grpc.StatusCode.INVALID_ARGUMENT, s.summary())
        # A layout inside the roots whose blob is a symlink out of them.
        inside = write_layout("symlinked", img.manifest, "v1", images.all_blobs(img))
        blob = os.path.join(inside, "blobs", "sha256", img.layers[0].hex)
        os.remove(blob)
        os.symlink(os.path.join(outside, "blobs", "sha256", img.layers[0].hex), blob)
        s = push_image("%s/%s:v1" % (PROXY.host, repo), layout=inside, timeout=T_BAD)
        self.assertEqual(s.code, grpc.StatusCode.PERMISSION_DENIED, s.summary())
        self.assertNothingSent(repo)

    def test_image_spec_bad_media_type(self):
        img = images.build_image(uniq("badmt"), {"a": "b"}, layer_sizes=(100,))
        spec = image_spec(img)
        spec.media_type = images.OCI_INDEX
        repo = "bad/" + uniq("spec-mt")
        s = push_image("%s/%s:v1" % (PROXY.host, repo), image=spec, timeout=T_BAD)
        self.assertEqual(s.code, grpc.StatusCode.INVALID_ARGUMENT, s.summary())
        self.assertNothingSent(repo)


if __name__ == "__main__":
    testing.main("test_write")
