"""The local Hub application: shared state of the three origins, URL
signing, multipart assembly, and the admin origin (fault injection, rate
limits, request log, server-side pushes, settings).
"""

import base64
import hashlib
import hmac
import os
import shutil
import threading
import time
import urllib.parse

from lh_auth import Auth
from lh_cdn import CdnHandler
from lh_faults import Faults, Link, RateLimiter
from lh_http import Handler, HubError, RequestLog, bind, serve_in_thread
from lh_hub import HubHandler, validate_repo_path
from lh_store import Store, lfs_pointer

MiB = 1 << 20


class App:
    def __init__(self, data, auth=None, page_size=1000, url_lifetime=3600,
                 multipart_threshold=64 * MiB, multipart_chunk=16 * MiB,
                 resolve_cache_redirect=False, request_log=None,
                 commit_cap=2048 * MiB):
        self.store = Store(data)
        self.auth = auth or Auth()
        self.faults = Faults()
        self.ratelimit = RateLimiter()
        self.uplink = Link(0)
        self.log = RequestLog(request_log)
        self.page_size = page_size
        self.url_lifetime = url_lifetime
        self.multipart_threshold = multipart_threshold
        self.multipart_chunk = multipart_chunk
        self.resolve_cache_redirect = resolve_cache_redirect
        self.commit_cap = commit_cap
        self.key = os.urandom(32)
        self.cdn_base = None
        self.leaks_lock = threading.Lock()
        self.leaks = []
        self.parts_lock = threading.Lock()
        self.servers = []

    # --- signed URLs -----------------------------------------------------
    def _sig(self, kind, oid, size, exp, part=0, chunk=0):
        msg = "%s|%s|%d|%d|%d|%d" % (kind, oid, size, exp, part, chunk)
        return hmac.new(self.key, msg.encode(), hashlib.sha256).hexdigest()[:40]

    def _signed(self, base, kind, oid, size, exp, part=0, chunk=0, extra=()):
        q = [("X-Size", str(size)), ("X-Expires", str(exp))]
        if chunk:
            q.append(("X-Chunk", str(chunk)))
        q.append(("X-Signature", self._sig(kind, oid, size, exp, part, chunk)))
        q.extend(extra)
        return base + "?" + urllib.parse.urlencode(q)

    def cdn_url(self, oid, size, exp, filename=None):
        extra = [("filename", filename)] if filename else []
        return self._signed("%s/lfs/%s" % (self.cdn_base, oid), "get", oid,
                            size, exp, extra=extra)

    def cdn_upload_url(self, oid, size, exp, part=None):
        if part is None:
            return self._signed("%s/upload/%s" % (self.cdn_base, oid), "put",
                                oid, size, exp)
        return self._signed("%s/upload/%s/part/%d" % (self.cdn_base, oid, part),
                            "part", oid, size, exp, part, self.multipart_chunk)

    def complete_url(self, repo_url, oid, size, exp):
        return self._signed("%s.git/info/lfs/complete/%s" % (repo_url, oid),
                            "complete", oid, size, exp)

    def check_signature(self, kind, oid, query, part=0):
        """Validate a signed URL's query; returns the signed size."""
        def one(k):
            v = query.get(k)
            return v[-1] if v else None
        try:
            size = int(one("X-Size"))
            exp = int(one("X-Expires"))
            chunk = int(one("X-Chunk") or 0)
        except (TypeError, ValueError):
            raise HubError(403, "Missing or malformed signature")
        sig = one("X-Signature") or ""
        good = self._sig(kind, oid, size, exp, part, chunk)
        if not hmac.compare_digest(sig, good):
            raise HubError(403, "Signature does not match")
        if time.time() > exp:
            raise HubError(403, "Request has expired")
        return size

    def record_leak(self, handler):
        with self.leaks_lock:
            self.leaks.append({"ts": time.time(), "method": handler.command,
                               "path": handler.raw_path})

    # --- multipart -------------------------------------------------------
    def parts_dir(self, oid):
        return os.path.join(self.store.lfs_tmp, "parts", oid)

    def store_part(self, oid, part, tmp, md5):
        d = self.parts_dir(oid)
        os.makedirs(d, exist_ok=True)
        os.replace(tmp, os.path.join(d, "%05d" % part))
        with open(os.path.join(d, "%05d.etag" % part), "w") as f:
            f.write(md5)

    def assemble_multipart(self, oid, size, parts):
        store = self.store
        if store.lfs_has(oid, size):
            return
        d = self.parts_dir(oid)
        chunk = self.multipart_chunk
        nparts = max(1, -(-size // chunk))
        try:
            nums = sorted(int(p["partNumber"]) for p in parts)
            etags = {int(p["partNumber"]): str(p["etag"]).strip('"')
                     for p in parts}
        except (KeyError, TypeError, ValueError):
            raise HubError(400, "Invalid parts list")
        if nums != list(range(1, nparts + 1)):
            raise HubError(400, "Expected parts 1..%d" % nparts)
        with self.parts_lock:
            f, tmp = store.lfs_tmpfile()
            sha = hashlib.sha256()
            n = 0
            try:
                with f:
                    for i in nums:
                        p = os.path.join(d, "%05d" % i)
                        try:
                            with open(p + ".etag") as ef:
                                if ef.read() != etags[i]:
                                    raise HubError(400, "ETag mismatch for "
                                                   "part %d" % i)
                            with open(p, "rb") as pf:
                                while True:
                                    b = pf.read(MiB)
                                    if not b:
                                        break
                                    sha.update(b)
                                    n += len(b)
                                    f.write(b)
                        except FileNotFoundError:
                            raise HubError(400, "Part %d was not uploaded" % i)
                if n != size or sha.hexdigest() != oid:
                    raise HubError(400, "Assembled object does not match its "
                                   "oid and size")
            except BaseException:
                os.unlink(tmp)
                raise
            store.lfs_commit_file(tmp, oid)
            shutil.rmtree(d, ignore_errors=True)

    # --- server-side writes (admin) ---------------------------------------
    def push(self, spec):
        """Commit to a branch directly, as another client would."""
        repo = self.repo_from_key(spec.get("repo"))
        branch = spec.get("branch") or "main"
        ops = []
        for path, content in (spec.get("files") or {}).items():
            path = validate_repo_path(path)
            if isinstance(content, str):
                data = content.encode()
                lfs = False
            else:
                data = (base64.b64decode(content["base64"])
                        if "base64" in content else
                        content.get("text", "").encode())
                lfs = bool(content.get("lfs"))
            if lfs:
                oid = self.store.lfs_put_bytes(data)
                data = lfs_pointer(oid, len(data))
            ops.append(("add", path, data))
        for path in spec.get("delete") or []:
            ops.insert(0, ("delete", validate_repo_path(path)))
        author = (spec.get("author") or "someone-else",
                  "%s@localhub.invalid" % (spec.get("author") or "someone-else"))
        with repo.lock:
            ref = "refs/heads/" + branch
            head = repo.refs().get(ref)
            if head is None:
                raise HubError(404, "No branch %s" % branch)
            new = repo.make_commit(ref, head, ops, spec.get("message") or
                                   "Server-side commit", author)
        return {"commitOid": new, "parent": head}

    def repo_from_key(self, key):
        """'models/ns/name', 'datasets/ns/name', 'spaces/ns/name' or
        'ns/name' (a model)."""
        parts = (key or "").split("/")
        if len(parts) == 2:
            parts = ["models"] + parts
        if len(parts) != 3 or parts[0] not in ("models", "datasets", "spaces"):
            raise HubError(400, "Invalid repo key %r" % key)
        repo = self.store.get_repo(parts[0][:-1], parts[1], parts[2])
        if repo is None:
            raise HubError(404, "No repo %s" % key, "RepoNotFound")
        return repo

    # --- lifecycle -------------------------------------------------------
    def start(self, host="127.0.0.1", port=0, cdn_host="127.0.0.1", cdn_port=0,
              admin_port=0):
        hub = bind(host, port, HubHandler, self, "hub")
        cdn = bind(cdn_host, cdn_port, CdnHandler, self, "cdn")
        admin = bind(host, admin_port, AdminHandler, self, "admin")
        self.cdn_base = "http://%s:%d" % (cdn_host, cdn.server_address[1])
        self.servers = [hub, cdn, admin]
        for s in self.servers:
            serve_in_thread(s)
        return {"hub": "http://%s:%d" % (host, hub.server_address[1]),
                "cdn": self.cdn_base,
                "admin": "http://%s:%d" % (host, admin.server_address[1]),
                "pid": os.getpid()}

    def stop(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()


CONFIG_KEYS = {"page_size": int, "url_lifetime": int,
               "multipart_threshold": int, "multipart_chunk": int,
               "resolve_cache_redirect": bool}


class AdminHandler(Handler):
    """JSON control API on its own port; see docs/localhub.md."""

    def route(self, method):
        s = self.segs
        table = {
            ("health", "GET"): self.health,
            ("faults", "GET"): self.faults_list,
            ("faults", "POST"): self.faults_add,
            ("faults", "DELETE"): self.faults_clear,
            ("ratelimit", "GET"): self.ratelimit_get,
            ("ratelimit", "POST"): self.ratelimit_set,
            ("log", "GET"): self.log_get,
            ("log", "DELETE"): self.log_clear,
            ("auth-leaks", "GET"): self.leaks_get,
            ("auth-leaks", "DELETE"): self.leaks_clear,
            ("push", "POST"): self.push,
            ("settings", "POST"): self.settings,
            ("config", "GET"): self.config_get,
            ("config", "POST"): self.config_set,
            ("ref", "POST"): self.set_ref,
        }
        if len(s) == 2 and s[0] == "faults" and method == "DELETE":
            return "admin", self.fault_remove
        fn = table.get((s[0] if len(s) == 1 else None, method))
        if fn is None:
            raise HubError(404, "Not Found")
        return "admin", fn

    def health(self):
        self.send_json(200, {"ok": True})

    def faults_list(self):
        self.send_json(200, self.app.faults.list())

    def faults_add(self):
        body = self.read_json()
        specs = body if isinstance(body, list) else [body]
        try:
            added = [self.app.faults.add(s) for s in specs]
        except (ValueError, TypeError) as e:
            raise HubError(400, str(e))
        self.send_json(200, added)

    def faults_clear(self):
        self.app.faults.clear()
        self.send_json(200, {})

    def fault_remove(self):
        try:
            ok = self.app.faults.remove(int(self.segs[1]))
        except ValueError:
            ok = False
        if not ok:
            raise HubError(404, "No such fault")
        self.send_json(200, {})

    def ratelimit_get(self):
        self.send_json(200, self.app.ratelimit.describe())

    def ratelimit_set(self):
        b = self.read_json() or {}
        self.app.ratelimit.configure(b.get("limit"), b.get("window", 300),
                                     b.get("buckets"))
        self.send_json(200, self.app.ratelimit.describe())

    def log_get(self):
        since = int(self.q("since") or 0)
        self.app.log.settle()
        entries = self.app.log.since(since)
        self.send_json(200, {"last": self.app.log.last_seq(),
                             "entries": entries})

    def log_clear(self):
        self.app.log.clear()
        self.send_json(200, {"last": self.app.log.last_seq()})

    def leaks_get(self):
        with self.app.leaks_lock:
            self.send_json(200, list(self.app.leaks))

    def leaks_clear(self):
        with self.app.leaks_lock:
            self.app.leaks.clear()
        self.send_json(200, {})

    def push(self):
        self.send_json(200, self.app.push(self.read_json() or {}))

    def settings(self):
        b = self.read_json() or {}
        repo = self.app.repo_from_key(b.pop("repo", None))
        allowed = {"private", "gated", "gated_access", "access", "writers"}
        bad = set(b) - allowed
        if bad:
            raise HubError(400, "Unknown settings: %s" % ", ".join(sorted(bad)))
        repo.set_meta(**b)
        self.send_json(200, repo.meta())

    def set_ref(self):
        """Move or delete a ref behind every client's back (force)."""
        b = self.read_json() or {}
        repo = self.app.repo_from_key(b.get("repo"))
        ref = b.get("ref") or ""
        if not ref.startswith("refs/"):
            raise HubError(400, "ref must be a full ref name")
        with repo.lock:
            if b.get("target"):
                repo.git("update-ref", ref, b["target"])
            else:
                repo.git("update-ref", "-d", ref)
        self.send_json(200, {})

    def config_get(self):
        self.send_json(200, {k: getattr(self.app, k) for k in CONFIG_KEYS})

    def config_set(self):
        b = self.read_json() or {}
        for k, v in b.items():
            if k not in CONFIG_KEYS:
                raise HubError(400, "Unknown config key %r" % k)
            setattr(self.app, k, CONFIG_KEYS[k](v))
        self.config_get()
