#!/usr/bin/python3
"""The plain-HTTP push floor: monolithic PUTs whose bodies go out with os.sendfile.

    sendfile_push.py --registry 127.0.0.1:PORT [--threads 4] REPO=LAYOUT [REPO=LAYOUT ...]

Pushes each OCI image layout (bench.py's layout: index.json names one
manifest; blobs under blobs/sha256/) to http://REGISTRY/v2/REPO, tag
"latest". All images go at once (one thread per image, started together);
within an image, up to --threads blobs at once, each:

    POST /v2/REPO/blobs/uploads/            -> 202, Location
    PUT  LOCATION&digest=D                  Content-Length: size; the body is
                                            sent with os.sendfile(socket, file)
                                            on a blocking plain TCP socket

then, once its blobs are in, the manifest PUT. Only the stdlib, no hashing
(the layout's digests are known), no retries: the least work a client can do
on the wire. The POST and the PUT of a blob share one keep-alive connection.

With --tls-ca CA the registry is https:// (verified against CA) and the body
goes out with SSLSocket.sendall of 1 MiB reads (no sendfile: Python 3.11's
ssl has no kTLS); push_limit.py uses that as a reference row next to curl.

Prints one JSON object on stdout:
    {"wall": s, "cpu": s, "cpu_process": s, "bytes": n,
     "jobs": [{"repo": r, "wall": s, "bytes": n}, ...]}
wall is from the start of the first request to the last answer; cpu is this
process's utime+stime over the same span (resource.getrusage, every thread),
cpu_process the same since the interpreter started (imports included).
Exits non-zero on any failure.
"""

import argparse
import http.client
import json
import os
import resource
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def cpu_now():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Image:
    def __init__(self, repo, path):
        self.repo = repo
        self.path = path
        with open(os.path.join(path, "index.json")) as f:
            desc = json.load(f)["manifests"][0]
        self.manifest_type = desc.get("mediaType", OCI_MANIFEST)
        with open(self.blob_path(desc["digest"]), "rb") as f:
            self.manifest = f.read()
        m = json.loads(self.manifest)
        self.blobs = [m["config"]] + m["layers"]
        self.bytes = sum(b["size"] for b in self.blobs)

    def blob_path(self, digest):
        return os.path.join(self.path, "blobs", "sha256", digest.split(":", 1)[1])


TLS = None  # an ssl.SSLContext with --tls-ca
BUF = 1024 * 1024


def _connect(host, port):
    # timeout=None: a blocking socket, so os.sendfile can be used on its fd directly.
    if TLS is not None:
        c = http.client.HTTPSConnection(host, port, timeout=None, context=TLS)
    else:
        c = http.client.HTTPConnection(host, port, timeout=None)
    c.connect()
    return c


def _send_body(sock, fd, size, what):
    off = 0
    if TLS is None:
        out = sock.fileno()
        while off < size:
            n = os.sendfile(out, fd, off, size - off)
            if n == 0:
                raise RuntimeError("%s: file ended at %d of %d bytes" % (what, off, size))
            off += n
        return
    buf = bytearray(BUF)
    mv = memoryview(buf)
    while off < size:
        n = os.readv(fd, [mv[:min(BUF, size - off)]])
        if n == 0:
            raise RuntimeError("%s: file ended at %d of %d bytes" % (what, off, size))
        sock.sendall(mv[:n])
        off += n


def _answer(conn, what, want):
    r = conn.getresponse()
    body = r.read()
    if r.status not in want:
        raise RuntimeError("%s: HTTP %d: %s" % (what, r.status, body[:300].decode(errors="replace")))
    return r


def push_blob(host, port, img, blob):
    conn = _connect(host, port)
    try:
        conn.request("POST", "/v2/%s/blobs/uploads/" % img.repo, headers={"Content-Length": "0"})
        r = _answer(conn, "POST upload for %s" % blob["digest"], (202,))
        loc = r.getheader("Location")
        if not loc:
            raise RuntimeError("POST upload: no Location")
        u = urllib.parse.urlsplit(loc)
        target = u.path + "?" + u.query if u.query else u.path
        target += ("&" if u.query else "?") + "digest=" + blob["digest"]
        if u.netloc and u.netloc != "%s:%d" % (host, port):
            raise RuntimeError("upload Location on another host: %s" % loc)
        size = blob["size"]
        conn.putrequest("PUT", target, skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        fd = os.open(img.blob_path(blob["digest"]), os.O_RDONLY)
        try:
            _send_body(conn.sock, fd, size, blob["digest"])
        finally:
            os.close(fd)
        _answer(conn, "PUT %s" % blob["digest"], (201,))
    finally:
        conn.close()


def push_image(host, port, img, threads):
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(img.blobs)))) as ex:
        for f in [ex.submit(push_blob, host, port, img, b) for b in img.blobs]:
            f.result()
    conn = _connect(host, port)
    try:
        conn.request("PUT", "/v2/%s/manifests/latest" % img.repo, body=img.manifest,
                     headers={"Content-Type": img.manifest_type})
        _answer(conn, "PUT manifest of %s" % img.repo, (201,))
    finally:
        conn.close()


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--registry", required=True, help="HOST:PORT")
    p.add_argument("--tls-ca", help="speak https, trusting this CA (no sendfile then)")
    p.add_argument("--threads", type=int, default=4, help="blobs at once per image")
    p.add_argument("jobs", nargs="+", metavar="REPO=LAYOUT")
    a = p.parse_args(argv)
    global TLS
    if a.tls_ca:
        import ssl
        TLS = ssl.create_default_context(cafile=a.tls_ca)
    host, port = a.registry.rsplit(":", 1)
    port = int(port)
    images = []
    for j in a.jobs:
        repo, path = j.split("=", 1)
        images.append(Image(repo, path))

    results = [None] * len(images)
    errors = []
    barrier = threading.Barrier(len(images) + 1)

    def job(i, img):
        barrier.wait()
        t0 = time.monotonic()
        try:
            push_image(host, port, img, a.threads)
            results[i] = {"repo": img.repo, "wall": time.monotonic() - t0, "bytes": img.bytes}
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append("%s: %s" % (img.repo, e))

    ts = [threading.Thread(target=job, args=(i, img)) for i, img in enumerate(images)]
    for t in ts:
        t.start()
    cpu0 = cpu_now()
    t0 = time.monotonic()
    barrier.wait()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    cpu = cpu_now() - cpu0
    if errors:
        sys.stderr.write("sendfile_push: %s\n" % "; ".join(errors))
        return 1
    json.dump({"wall": wall, "cpu": cpu, "cpu_process": cpu_now(),
               "bytes": sum(img.bytes for img in images), "jobs": results}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
