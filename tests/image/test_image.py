#!/usr/bin/python3
"""The container image (Dockerfile), built with podman and run without a container runtime.

Run (as root, with podman):  /usr/bin/python3 tests/image/test_image.py [-k name]

1. `bash scripts/regd.sh image` builds the image (IMAGE, default
   localhost/regd:latest): podman --isolation chroot, on a Debian 12 base made
   with debootstrap when no registry can be reached. Its layer cache makes a
   rebuild of unchanged sources take seconds. REGD_IMAGE_REUSE=1 skips the
   build and tests the image as it is.
2. `podman image mount` unpacks it. Programs from the image run with
   `chroot --userspec=10001:10001` in a private mount namespace (unshare), which
   gives them what a container runtime would: a writable /tmp (a host directory,
   bind-mounted), /dev/null, /dev/zero, /dev/random, /dev/urandom and /proc. They
   share the host's network, so they reach a registry on 127.0.0.1.
3. Checks: the image's user, entrypoint, port, OCI labels and HEALTHCHECK; no
   compiler, headers or apt lists left in it; `regd --version` and
   `regdctl --version` match the version label; the image's regd, as UID 10001,
   serves an Inspect (from the host's Python stubs and from the image's own
   regdctl) of an image seeded into a real docker-registry, answers
   `regdctl health` and the HEALTHCHECK command, and exits 0 on SIGTERM.

Skipped (exit 77, ctest's SKIP_RETURN_CODE) without podman or when not root
(mounts and chroot). Set REGD_TEST_KEEP=1 to keep the temp dir.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SKIP = 77
UID = 10001
IMAGE = os.environ.get("IMAGE", "localhost/regd:latest")
BUILD_TIMEOUT = 3000   # a cold build (debootstrap, then compiling regd) on 2 busy cores
T = 60

ENV = None
MNT = None
INSPECT = None   # `podman image inspect` of IMAGE
BUILD_SECONDS = None


def skip_reason():
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman buildah debootstrap)"
    if os.geteuid() != 0:
        return "needs root (podman image mount, bind mounts, chroot)"
    for tool in ("unshare", "chroot", "mount"):
        if shutil.which(tool) is None:
            return "%s is not installed" % tool
    return None


if __name__ == "__main__" and skip_reason():
    print("image: SKIPPED: %s" % skip_reason())
    print("image: 0 passed, 0 failed, 1 skipped")
    sys.exit(SKIP)

from fixtures import images, paths, stubs, testing  # noqa: E402
from fixtures.daemon import Daemon  # noqa: E402
from fixtures.registry import Registry  # noqa: E402

# Run in a private mount namespace: mount what a runtime would, then chroot
# into the image as UID/GID 10001. The mounts vanish with the namespace.
_IN_IMAGE = r'''
set -e
root=$1 tmp=$2
shift 2
mount --bind "$tmp" "$root/tmp"
mount -t tmpfs -o mode=0755,size=64k,nosuid,noexec tmpfs "$root/dev"
for d in null zero random urandom; do
  : >"$root/dev/$d"
  mount --bind "/dev/$d" "$root/dev/$d"
done
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
exec chroot --userspec=10001:10001 --groups=10001 "$root" "$@"
'''

CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "HOME": "/nonexistent"}


def in_image(tmp_dir, argv):
    """A command line that runs argv inside the image, with tmp_dir as its /tmp."""
    return ["unshare", "--mount", "--propagation", "private",
            "sh", "-c", _IN_IMAGE, "sh", MNT, tmp_dir] + list(argv)


def run_in_image(*argv, env=None):
    tmp = os.path.join(ENV.workdir, "tmp-run")
    os.makedirs(tmp, exist_ok=True)
    os.chown(tmp, UID, UID)
    full_env = dict(CHROOT_ENV, **(env or {}))
    return subprocess.run(in_image(tmp, argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=full_env, timeout=T)


class ImageDaemon(Daemon):
    """The image's regd, chrooted as UID 10001; its directory (stderr.log apart)
    is its /tmp: ready file /tmp/ready, DOCKER_CONFIG /tmp/docker-config."""

    def __init__(self, workdir, **kwargs):
        env = dict(CHROOT_ENV, DOCKER_CONFIG="/tmp/docker-config")
        super().__init__(workdir, env=env, **kwargs)

    def command(self):
        os.chown(self.dir, UID, UID)  # regd writes (and removes) its ready file there
        cmd = ["/usr/local/bin/regd", "--listen=127.0.0.1:0", "--ready_file=/tmp/ready",
               "--drain_delay=0s"]
        if self.insecure_registries:
            cmd.append("--insecure_registries=" + ",".join(self.insecure_registries))
        return in_image(self.dir, cmd + self.extra_args)


def podman(*args, timeout=120):
    return subprocess.run(["podman"] + list(args), stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, check=True).stdout


def cmake_version():
    """The version in CMakeLists.txt's project(regd VERSION x.y.z ...)."""
    with open(os.path.join(paths.source_dir(), "CMakeLists.txt")) as f:
        for line in f:
            if line.startswith("project(regd VERSION "):
                return line.split()[2]
    raise RuntimeError("no project(regd VERSION ...) in CMakeLists.txt")


def healthcheck():
    """The image's HEALTHCHECK (podman's inspect: "Healthcheck"; docker's: Config.Healthcheck)."""
    return (INSPECT.get("Healthcheck") or INSPECT.get("HealthCheck")
            or (INSPECT.get("Config") or {}).get("Healthcheck"))


def build_image():
    """`scripts/regd.sh image`; its output goes to WORKDIR/image-build.log."""
    global BUILD_SECONDS
    log = os.path.join(ENV.workdir, "image-build.log")
    start = time.monotonic()
    with open(log, "w") as f:
        res = subprocess.run(["bash", os.path.join(paths.source_dir(), "scripts", "regd.sh"),
                              "image"], stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT, env=dict(os.environ, IMAGE=IMAGE),
                             timeout=BUILD_TIMEOUT)
    BUILD_SECONDS = time.monotonic() - start
    with open(log) as f:
        out = f.read()
    if res.returncode != 0:
        raise RuntimeError("scripts/regd.sh image failed (exit %d):\n%s"
                           % (res.returncode, out[-8000:]))
    sys.stderr.write("image: built %s in %.0fs (%s)\n" % (
        IMAGE, BUILD_SECONDS, out.strip().splitlines()[-1]))


def setUpModule():
    global ENV, MNT, INSPECT
    ENV = testing.Env(prefix="regd-image-")
    testing.ACTIVE_ENVS.append(ENV)
    try:
        os.chmod(ENV.workdir, 0o755)
        if os.environ.get("REGD_IMAGE_REUSE") != "1":
            build_image()
        INSPECT = json.loads(podman("image", "inspect", IMAGE))[0]
        MNT = podman("image", "mount", IMAGE).strip()
        ENV.callback(podman, "image", "unmount", IMAGE)
        if not os.path.isfile(os.path.join(MNT, "usr/local/bin/regd")):
            raise RuntimeError("no /usr/local/bin/regd under %s" % MNT)
    except BaseException:
        ENV.close()
        raise


def tearDownModule():
    if ENV is not None:
        ENV.close()


class ImageConfigTest(testing.IntegrationCase):
    def config(self):
        return INSPECT.get("Config") or {}

    def test_user_entrypoint_port(self):
        c = self.config()
        self.assertEqual(c.get("User"), "%d:%d" % (UID, UID))
        self.assertEqual(c.get("Entrypoint"), ["/usr/local/bin/regd"])
        self.assertEqual(c.get("Cmd"), ["--listen=0.0.0.0:50051", "--allow_insecure_listen"])
        self.assertIn("50051/tcp", c.get("ExposedPorts") or {})

    def test_oci_labels(self):
        labels = self.config().get("Labels") or {}
        p = "org.opencontainers.image."
        self.assertEqual(labels.get(p + "title"), "regd")
        self.assertTrue(labels.get(p + "description"))
        self.assertTrue(labels.get(p + "licenses"))
        self.assertEqual(labels.get(p + "version"), cmake_version())
        head = subprocess.run(["git", "-C", paths.source_dir(), "rev-parse", "HEAD"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if head.returncode == 0 and os.environ.get("REGD_IMAGE_REUSE") != "1":
            self.assertTrue(labels.get(p + "revision", "").startswith(head.stdout.strip()),
                            labels.get(p + "revision"))
        self.assertIn(p + "source", labels)

    def test_healthcheck(self):
        # Kept in the docker format (scripts/regd.sh's default), dropped in OCI.
        hc = healthcheck()
        if not hc:
            self.skipTest("no HEALTHCHECK: the image is in OCI format (IMAGE_FORMAT=oci)")
        self.assertEqual(hc.get("Test"),
                         ["CMD", "/usr/local/bin/regdctl", "--timeout=3s", "health"])

    def test_nothing_left_from_the_build(self):
        for path in ("usr/bin/g++", "usr/bin/cmake", "usr/bin/protoc", "usr/include/grpcpp",
                     "usr/include/absl", "src"):
            self.assertFalse(os.path.lexists(os.path.join(MNT, path)), path)
        lists = [n for n in os.listdir(os.path.join(MNT, "var/lib/apt/lists"))
                 if n not in ("partial", "lock", "auxfiles")]
        self.assertEqual(lists, [])
        debs = [n for n in os.listdir(os.path.join(MNT, "var/cache/apt/archives"))
                if n.endswith(".deb")]
        self.assertEqual(debs, [])
        for name in ("regd", "regdctl"):
            st = os.stat(os.path.join(MNT, "usr/local/bin", name))
            self.assertEqual((st.st_uid, st.st_mode & 0o7777), (0, 0o755), name)

    def test_versions(self):
        version = cmake_version()
        r = run_in_image("/usr/local/bin/regd", "--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^regd %s \(commit \S+\)\n$" % version.replace(".", r"\."))
        r = run_in_image("/usr/local/bin/regdctl", "--version")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^regdctl %s " % version.replace(".", r"\."))
        r = run_in_image("/usr/bin/id", "-u")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, str(UID)), r.stderr)


class ImageServesTest(testing.IntegrationCase):
    @classmethod
    def setUpClass(cls):
        cls.reg = ENV.enter(Registry(ENV.workdir), "registry")
        cls.img = images.build_image("image-test", {"org.example": "image-test"},
                                     layer_sizes=(4096, 1024))
        images.push(cls.img, ENV.workdir, cls.reg.host, "image/test", "v1")
        cls.ref = "%s/image/test:v1" % cls.reg.host

    def test_inspect_health_and_sigterm(self):
        d = ImageDaemon(ENV.workdir, insecure_registries=[self.reg.host], stop_timeout=20)
        ENV.logs.append(("regd (image)", d.stderr_path))
        with d:
            with open("/proc/%d/status" % d.proc.pid) as f:
                status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
            self.assertEqual(status["Uid"].split()[:2], [str(UID)] * 2)
            self.assertEqual(status["Gid"].split()[:2], [str(UID)] * 2)
            self.assertEqual(os.readlink("/proc/%d/exe" % d.proc.pid),
                             os.path.join(MNT, "usr/local/bin/regd"))

            # From the host, with the Python stubs.
            pb = stubs.load().registry_pb2
            r = d.stub.Inspect(pb.InspectRequest(image_ref=self.ref), timeout=T)
            self.assertEqual(r.digest, self.img.digest)
            self.assertEqual(dict(r.labels), {"org.example": "image-test"})

            # From inside, with the image's regdctl.
            r = run_in_image("/usr/local/bin/regdctl", "--addr", d.target, "-o", "json",
                             "inspect", self.ref)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["digest"], self.img.digest)
            r = run_in_image("/usr/local/bin/regdctl", "--addr", d.target, "health")
            self.assertEqual((r.returncode, r.stdout), (0, "SERVING\n"), r.stderr)

            # The HEALTHCHECK's own command, pointed at this regd by $REGD_ADDR.
            hc = healthcheck()
            if hc:
                self.assertEqual(hc["Test"][0], "CMD")
                r = run_in_image(*hc["Test"][1:], env={"REGD_ADDR": d.target})
                self.assertEqual(r.returncode, 0, r.stderr)
        # Leaving `with` sent SIGTERM and required exit status 0.
        self.assertEqual(d.returncode, 0)
        self.assertFalse(os.path.exists(d.ready_path))


if __name__ == "__main__":
    testing.main("image")
