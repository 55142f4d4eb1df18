"""HTTP plumbing shared by the local Hub's three origins (hub, cdn, admin).

Each origin is a ThreadingHTTPServer speaking HTTP/1.1 with keep-alive.  A
request is routed first (so that a fault rule can match its route name),
then checked against the fault rules, then handled.  File bodies go out with
sendfile.  Every request on the hub and cdn origins is appended to the
request log as one JSON line once its response is complete.
"""

import collections
import http.server
import json
import os
import re
import socket
import socketserver
import struct
import threading
import time
import urllib.parse

JSON_CAP = 16 << 20


class HubError(Exception):
    """An error answered the way the Hub does: status, X-Error-Code,
    X-Error-Message and a JSON body."""

    def __init__(self, status, message, code=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


class Aborted(Exception):
    """The connection was cut on purpose (fault injection)."""


class RequestLog:
    def __init__(self, path=None, keep=200000):
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.inflight = 0       # hub and cdn requests not yet logged
        self.path = path
        self.file = open(path, "a", buffering=1) if path else None
        self.entries = collections.deque(maxlen=keep)
        self.seq = 0

    def begin(self):
        with self.lock:
            self.inflight += 1

    def settle(self, timeout=2.0):
        """Wait until every request in progress has been logged (bounded:
        a stalled request must not block the caller for long)."""
        with self.lock:
            self.idle.wait_for(lambda: self.inflight == 0, timeout)

    def write(self, entry):
        with self.lock:
            self.inflight -= 1
            if self.inflight == 0:
                self.idle.notify_all()
            self.seq += 1
            entry["seq"] = self.seq
            self.entries.append(entry)
            if self.file:
                self.file.write(json.dumps(entry, sort_keys=True) + "\n")

    def since(self, seq):
        with self.lock:
            return [e for e in self.entries if e["seq"] > seq]

    def clear(self):
        with self.lock:
            self.entries.clear()

    def last_seq(self):
        with self.lock:
            return self.seq


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, addr, handler, app, origin):
        self.app = app
        self.origin = origin
        super().__init__(addr, handler)

    def handle_error(self, request, client_address):
        # A client that goes away mid-response is routine, not an error.
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, BrokenPipeError, TimeoutError,
                            Aborted)):
            return
        super().handle_error(request, client_address)


class _BodyReader:
    """Reads a request body (Content-Length or chunked) with a size cap."""

    def __init__(self, rfile, length, chunked, cap):
        self.rfile = rfile
        self.left = length
        self.chunked = chunked
        self.cap = cap
        self.total = 0
        self.chunk_left = 0
        self.done = False

    def read(self, n=1 << 20):
        if self.done:
            return b""
        if self.chunked:
            if self.chunk_left == 0:
                line = self.rfile.readline(1024)
                if not line:
                    raise HubError(400, "truncated chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    self.done = True
                    return b""
                self.chunk_left = size
            data = self.rfile.read(min(n, self.chunk_left))
            if not data:
                raise HubError(400, "truncated chunked body")
            self.chunk_left -= len(data)
            if self.chunk_left == 0:
                self.rfile.readline(8)
        else:
            if self.left <= 0:
                self.done = True
                return b""
            data = self.rfile.read(min(n, self.left))
            if not data:
                raise HubError(400, "truncated request body")
            self.left -= len(data)
        self.total += len(data)
        if self.total > self.cap:
            raise HubError(413, "request body too large")
        return data

    def readall(self):
        parts = []
        while True:
            d = self.read()
            if not d:
                return b"".join(parts)
            parts.append(d)

    def drain(self):
        try:
            while self.read():
                pass
        except HubError:
            pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "localhub"

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        # Headers and a small body go out as separate writes: without
        # this, Nagle's algorithm and delayed ACKs cost ~40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # --- request helpers -------------------------------------------------
    def log_message(self, fmt, *args):
        pass

    @property
    def app(self):
        return self.server.app

    def body_reader(self, cap=JSON_CAP):
        te = self.headers.get("Transfer-Encoding", "").lower()
        length = int(self.headers.get("Content-Length") or 0)
        if length > cap:
            raise HubError(413, "request body too large")
        return _BodyReader(self.rfile, length, "chunked" in te, cap)

    def read_body(self, cap=JSON_CAP):
        if self._body is None:
            self._body = self.body_reader(cap).readall()
        return self._body

    def read_json(self, cap=JSON_CAP):
        raw = self.read_body(cap)
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise HubError(400, "Invalid JSON in request body")

    def q(self, name, default=None):
        v = self.query.get(name)
        return v[-1] if v else default

    def qbool(self, name):
        return (self.q(name) or "").lower() in ("1", "true", "yes")

    # --- responses ------------------------------------------------------
    def start(self, status, headers, length):
        self.status = status
        self.send_response(status)
        for k, v in list(self.extra_headers.items()) + list(headers.items()):
            self.send_header(k, v)
        if length is not None:
            self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def _kill(self, reset):
        self.close_connection = True
        if reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.wfile.close()
            self.rfile.close()
            self.connection.close()
            raise Aborted()
        raise Aborted()

    def _fault_point(self, n):
        """Bytes of body that may be sent before the fault acts (None: no
        mid-body fault)."""
        f = self.fault
        if f is None or f.action not in ("reset", "truncate", "stall"):
            return None
        if f.action == "stall" and f.after_bytes == 0:
            return None
        return min(n, f.after_bytes)

    def _after_fault_point(self):
        f = self.fault
        if f.action == "stall":
            time.sleep(f.seconds)
            self.fault = None
            return
        self._kill(f.action == "reset")

    def send_bytes(self, status, body, headers=None, ctype=None):
        headers = dict(headers or {})
        if ctype:
            headers["Content-Type"] = ctype
        self.start(status, headers, len(body))
        if self.command == "HEAD" or not body:
            return
        k = self._fault_point(len(body))
        if k is not None:
            self.wfile.write(body[:k])
            self.bytes_sent += k
            self._after_fault_point()
            body = body[k:]
        self.wfile.write(body)
        self.bytes_sent += len(body)

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_bytes(status, body, headers, "application/json; charset=utf-8")

    def send_error_hub(self, err):
        headers = dict(err.headers)
        if err.code:
            headers["X-Error-Code"] = err.code
        headers["X-Error-Message"] = err.message.encode(
            "ascii", "replace").decode()
        body = {"error": err.message}
        if self._body is None and self.command in ("POST", "PUT"):
            self.close_connection = True    # unread body: do not reuse
        self.send_json(err.status, body, headers)

    def send_file(self, path, size, headers, ctype="application/octet-stream"):
        """Serve a file with Range support (single range) and sendfile."""
        headers = dict(headers)
        headers["Accept-Ranges"] = "bytes"
        headers["Content-Type"] = ctype
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get("Range")
        f = self.fault
        if f is not None and f.action == "ignore_range":
            rng = None          # answer 200 with the whole body
        if rng:
            parsed = parse_range(rng, size)
            if parsed == "unsatisfiable":
                headers["Content-Range"] = "bytes */%d" % size
                raise HubError(416, "Requested Range Not Satisfiable",
                               headers={"Content-Range": "bytes */%d" % size})
            if parsed is not None:
                start, end = parsed
                status = 206
                if f is not None and f.action == "wrong_range":
                    # Serve and label a range one byte later than asked.
                    start, end = min(start + 1, size - 1), min(end + 1, size - 1)
                headers["Content-Range"] = "bytes %d-%d/%d" % (start, end, size)
        count = end - start + 1 if size else 0
        self.start(status, headers, count)
        if self.command == "HEAD" or count == 0:
            return
        with open(path, "rb") as f:
            k = self._fault_point(count)
            if k is not None:
                self._sendfile(f, start, k)
                self._after_fault_point()
                start += k
                count -= k
            self._sendfile(f, start, count)

    def _sendfile(self, f, offset, count):
        if count <= 0:
            return
        sent = self.connection.sendfile(f, offset, count)
        self.bytes_sent += sent
        if sent != count:
            raise ConnectionError("short sendfile")

    # --- dispatch -------------------------------------------------------
    def route(self, method):
        """Return (route name, callable).  Overridden per origin."""
        raise HubError(404, "Not Found")

    def prepare(self):
        """Per-request checks after routing (auth, rate limits)."""

    def _handle(self, method):
        t0 = time.time()
        self.status = None
        self.bytes_sent = 0
        self.fault = None
        self.extra_headers = {}
        self.route_name = None
        self.log_extra = {}
        self._body = None
        split = urllib.parse.urlsplit(self.path)
        self.raw_path = split.path
        self.raw_query = split.query
        self.query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        self.segs = [s for s in split.path.split("/")][1:]
        if self.server.origin != "admin":
            self.app.log.begin()
        try:
            try:
                self.route_name, fn = self.route(method)
                self.prepare()
                f = self.app.faults.pick(self.server.origin, self.route_name,
                                         method, self.raw_path,
                                         range_offset(self.headers.get("Range")))
                if f is not None:
                    self.log_extra["fault"] = f.name
                    if f.action == "status":
                        hdrs = {}
                        if f.retry_after is not None:
                            hdrs["Retry-After"] = str(f.retry_after)
                        raise HubError(f.status, "Injected fault %s" % f.name,
                                       headers=hdrs)
                    if f.action == "stall" and f.after_bytes == 0:
                        time.sleep(f.seconds)
                    else:
                        self.fault = f
                fn()
            except HubError as e:
                if self.status is not None:
                    raise   # headers already sent: cannot answer again
                self.send_error_hub(e)
        except Aborted:
            self.close_connection = True
        except (ConnectionError, BrokenPipeError, TimeoutError):
            self.close_connection = True
        except Exception as e:  # a bug in the server: answer 500, log it
            import traceback
            traceback.print_exc()
            if self.status is None:
                try:
                    self.close_connection = True
                    self.send_error_hub(HubError(500, "Internal error: %s" % e))
                except OSError:
                    pass
            else:
                self.close_connection = True
        finally:
            self.log_request_done(method, t0)

    def log_request_done(self, method, t0):
        if self.server.origin == "admin":
            return
        entry = {
            "ts": round(t0, 6),
            "origin": self.server.origin,
            "method": method,
            "path": self.raw_path,
            "route": self.route_name,
            "range": self.headers.get("Range"),
            "status": self.status,
            "bytes": self.bytes_sent,
            "auth": "Authorization" in self.headers,
            "ms": round((time.time() - t0) * 1000, 3),
        }
        if self.server.origin == "hub" and self.raw_query:
            entry["query"] = self.raw_query
        entry.update(self.log_extra)
        self.app.log.write(entry)

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")


def range_offset(header):
    """Where a Range header's first range starts (0 without one, or for a
    suffix range, which fault rules treat as a whole-file request)."""
    m = re.match(r"\s*bytes\s*=\s*(\d+)\s*-", header or "")
    return int(m.group(1)) if m else 0


def parse_range(header, size):
    """Parse a single-range Range header.  Returns (start, end) inclusive,
    None to ignore the header (serve 200), or 'unsatisfiable'."""
    if not header.startswith("bytes="):
        return None
    spec = header[6:].strip()
    if "," in spec:
        return None
    first, _, last = spec.partition("-")
    try:
        if first == "":
            n = int(last)
            if n <= 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - n), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or start < 0:
        return "unsatisfiable"
    if end < start:
        return None
    return start, min(end, size - 1)


def serve_in_thread(server):
    t = threading.Thread(target=server.serve_forever, daemon=True,
                         name="serve-" + server.origin)
    t.start()
    return t


def bind(host, port, handler, app, origin):
    return ThreadingServer((host, port), handler, app, origin)


def ensure_dir(path):
    os.makedirs(path, exist_ok=True)
