"""The CDN origin: signed, expiring URLs for LFS content (GET with Range,
sendfile) and presigned uploads (basic PUT and multipart parts).

A CDN never needs the Hub token, so any request that carries an
Authorization header is refused with 403 and recorded as a leak: a client
that follows a /resolve/ redirect must drop the header.
"""

import hashlib
import os

from lh_http import HubError, Handler

UPLOAD_CAP = 1 << 40


class CdnHandler(Handler):
    def route(self, method):
        s = self.segs
        if len(s) == 2 and s[0] == "lfs" and method in ("GET", "HEAD"):
            return "cdn-get", self.get_object
        if len(s) == 2 and s[0] == "upload" and method == "PUT":
            return "cdn-put", self.put_object
        if len(s) == 4 and s[0] == "upload" and s[2] == "part" and \
                method == "PUT":
            return "cdn-part", self.put_part
        raise HubError(404, "Not Found")

    def prepare(self):
        if "Authorization" in self.headers:
            self.app.record_leak(self)
            raise HubError(403, "Authorization header is not allowed on "
                           "signed URLs")

    def get_object(self):
        oid = self.segs[1]
        size = self.app.check_signature("get", oid, self.query)
        store = self.app.store
        if not store.lfs_has(oid, size):
            raise HubError(404, "Object not found")
        name = self.q("filename")
        headers = {"ETag": '"%s"' % oid, "Cache-Control": "public, max-age=3600"}
        if name:
            headers["Content-Disposition"] = 'inline; filename="%s";' % (
                name.replace('"', "_"))
        self.send_file(store.lfs_path(oid), size, headers)

    def _receive(self, expected_size):
        """Stream the request body to a temp file; returns (path, sha256,
        md5, size)."""
        reader = self.body_reader(UPLOAD_CAP)
        f, tmp = self.app.store.lfs_tmpfile()
        sha = hashlib.sha256()
        md5 = hashlib.md5()
        n = 0
        try:
            with f:
                while True:
                    data = reader.read(1 << 20)
                    if not data:
                        break
                    self.app.uplink.take(len(data))
                    n += len(data)
                    if n > expected_size:
                        raise HubError(400, "Body larger than the declared "
                                       "size")
                    sha.update(data)
                    md5.update(data)
                    f.write(data)
            self._body = b""
        except BaseException:
            os.unlink(tmp)
            raise
        return tmp, sha.hexdigest(), md5.hexdigest(), n

    def put_object(self):
        oid = self.segs[1]
        size = self.app.check_signature("put", oid, self.query)
        tmp, sha, _, n = self._receive(size)
        if n != size or sha != oid:
            os.unlink(tmp)
            raise HubError(400, "Uploaded content does not match: expected "
                           "sha256 %s and %d bytes, got %s and %d bytes" % (
                               oid, size, sha, n))
        self.app.store.lfs_commit_file(tmp, oid)
        self.send_bytes(200, b"", {"ETag": '"%s"' % oid})

    def put_part(self):
        oid, part = self.segs[1], self.segs[3]
        if not part.isdigit() or int(part) < 1:
            raise HubError(404, "Not Found")
        part = int(part)
        size = self.app.check_signature("part", oid, self.query, part)
        chunk = int(self.q("X-Chunk") or 0)
        nparts = max(1, -(-size // chunk)) if chunk else 0
        if not chunk or part > nparts:
            raise HubError(400, "Invalid part")
        expected = chunk if part < nparts else size - chunk * (nparts - 1)
        tmp, _, md5, n = self._receive(expected)
        if n != expected:
            os.unlink(tmp)
            raise HubError(400, "Part %d must be %d bytes, got %d" % (
                part, expected, n))
        self.app.store_part(oid, part, tmp, md5)
        self.send_bytes(200, b"", {"ETag": '"%s"' % md5})
