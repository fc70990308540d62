"""A threaded TCP pass-through proxy that counts the bytes it forwards.

    with CountingProxy("127.0.0.1", 5000) as p:
        ... point the client at p.host ("127.0.0.1:PORT") ...
        p.up_bytes     # client -> upstream (request bodies: what an upload sends)
        p.down_bytes   # upstream -> client
        p.connections  # accepted connections

It does not parse HTTP: every byte is copied as it arrives, so the counts are
what went over the wire (headers included).
"""

import socket
import threading

_BUF = 256 * 1024


class CountingProxy:
    def __init__(self, upstream_host, upstream_port):
        self.upstream = (upstream_host, int(upstream_port))
        self.up_bytes = 0
        self.down_bytes = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._sock = None
        self._thread = None
        self._closing = False
        self._conns = set()

    # -- lifecycle --------------------------------------------------------
    def start(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._thread = threading.Thread(target=self._accept_loop, name="proxy-accept",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._closing = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.close()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def host(self):
        return "127.0.0.1:%d" % self._sock.getsockname()[1]

    def reset(self):
        with self._lock:
            self.up_bytes = self.down_bytes = self.connections = 0

    # -- forwarding ---------------------------------------------------------
    def _accept_loop(self):
        while not self._closing:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self.connections += 1
                self._conns.update((client, upstream))
            pair = {"open": 2}
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up, pair),
                                 daemon=True).start()

    def _pump(self, src, dst, up, pair):
        try:
            while True:
                data = src.recv(_BUF)
                if not data:
                    break
                dst.sendall(data)
                with self._lock:
                    if up:
                        self.up_bytes += len(data)
                    else:
                        self.down_bytes += len(data)
        except OSError:
            pass
        finally:
            # Pass the half-close on; the second pump to finish closes both sockets.
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            with self._lock:
                pair["open"] -= 1
                last = pair["open"] == 0
                if last:
                    self._conns.discard(src)
                    self._conns.discard(dst)
            if last:
                for s in (src, dst):
                    try:
                        s.close()
                    except OSError:
                        pass
