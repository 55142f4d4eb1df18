"""The hub origin: the Hub's JSON API, /resolve/ and /raw/, the LFS batch
API and git smart HTTP.

Routing works on the raw path split at '/' before percent-decoding, so that a
revision sent as one encoded segment (refs%2Fpr%2F1) stays one segment.  A
revision sent unencoded (the JS client's listFiles does this) is matched
greedily against the repository's refs.
"""

import base64
import binascii
import hashlib
import json
import os
import re
import subprocess
import time
import urllib.parse

from lh_http import HubError, Handler
from lh_store import (StoreError, GitAttributes, GitIgnore, iso_date,
                      lfs_pointer, SHA256_RE, HEX40_RE)

TYPE_PLURALS = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
REGULAR_MAX = 10 << 20
PATH_MAX = 4096
COMPONENT_MAX = 255
FORBIDDEN_COMPONENTS = (".git", ".cache")


def unq(seg):
    try:
        return urllib.parse.unquote(seg, errors="strict")
    except UnicodeDecodeError:
        raise HubError(400, "Invalid percent-encoding in URL")


def validate_repo_path(path):
    """Reject paths the Hub refuses in a commit; returns the normalised
    path."""
    if not isinstance(path, str) or path == "":
        raise HubError(400, "Invalid path: empty")
    p = path.lstrip("/")
    if "\0" in p:
        raise HubError(400, "Invalid path: %r" % path)
    if len(p.encode()) > PATH_MAX:
        raise HubError(400, "Invalid path: too long")
    for comp in p.split("/"):
        if comp in ("", ".", ".."):
            raise HubError(400, "Invalid path: %r" % path)
        if comp in FORBIDDEN_COMPONENTS:
            raise HubError(400, "Invalid path: %r contains a forbidden "
                           "component %r" % (path, comp))
        if len(comp.encode()) > COMPONENT_MAX:
            raise HubError(400, "Invalid path: component too long")
    return p


class HubHandler(Handler):
    # --- routing ---------------------------------------------------------
    def route(self, method):
        s = self.segs
        self.who = None
        self.repo = None
        if s and s[0] == "api":
            return self.route_api(method, s[1:])
        return self.route_files(method, s)

    def route_api(self, method, s):
        if s == ["whoami-v2"] and method == "GET":
            return "whoami", self.whoami
        if s == ["validate-yaml"] and method == "POST":
            return "validate-yaml", self.validate_yaml
        if s == ["repos", "create"] and method == "POST":
            return "repo-create", self.repo_create
        if s == ["repos", "delete"] and method == "DELETE":
            return "repo-delete", self.repo_delete
        if len(s) >= 5 and s[0] == "resolve-cache" and s[1] in TYPE_PLURALS:
            self.repo_args = (TYPE_PLURALS[s[1]], unq(s[2]), unq(s[3]))
            self.rest = s[4:]
            if method in ("GET", "HEAD"):
                return "resolve-cache", self.resolve_cache
        if len(s) >= 3 and s[0] in TYPE_PLURALS:
            self.repo_args = (TYPE_PLURALS[s[0]], unq(s[1]), unq(s[2]))
            rest = s[3:]
            self.rest = rest[1:]
            op = rest[0] if rest else None
            table = {
                (None, "GET"): ("repo-info", self.repo_info),
                ("revision", "GET"): ("repo-info", self.repo_info),
                ("tree", "GET"): ("tree", self.tree),
                ("paths-info", "POST"): ("paths-info", self.paths_info),
                ("refs", "GET"): ("refs", self.list_refs),
                ("commits", "GET"): ("commits", self.list_commits),
                ("preupload", "POST"): ("preupload", self.preupload),
                ("commit", "POST"): ("commit", self.commit),
                ("branch", "POST"): ("branch", self.branch_create),
                ("branch", "DELETE"): ("branch", self.branch_delete),
                ("tag", "POST"): ("tag", self.tag_create),
                ("tag", "DELETE"): ("tag", self.tag_delete),
                ("settings", "PUT"): ("settings", self.settings),
            }
            hit = table.get((op, method))
            if hit:
                return hit
        raise HubError(404, "Not Found")

    def route_files(self, method, s):
        rtype = "model"
        if s and s[0] in ("datasets", "spaces") and len(s) >= 3:
            rtype = TYPE_PLURALS[s[0]]
            s = s[1:]
        if len(s) < 3:
            raise HubError(404, "Not Found")
        name = unq(s[1])
        if name.endswith(".git"):
            name = name[:-4]
        self.repo_args = (rtype, unq(s[0]), name)
        rest = s[2:]
        self.rest = rest[1:]
        if rest[0] in ("resolve", "raw") and method in ("GET", "HEAD"):
            return rest[0], (self.resolve if rest[0] == "resolve" else self.raw)
        if rest[:2] == ["info", "lfs"]:
            lfs = rest[2:]
            if lfs == ["objects", "batch"] and method == "POST":
                return "lfs-batch", self.lfs_batch
            if lfs == ["objects", "verify"] and method == "POST":
                return "lfs-verify", self.lfs_verify
            if len(lfs) == 2 and lfs[0] == "complete" and method == "POST":
                return "lfs-complete", self.lfs_complete
            if lfs[:1] == ["locks"]:
                return "lfs-locks", self.lfs_locks
        if (rest == ["info", "refs"] or rest in (["git-upload-pack"],
                                                 ["git-receive-pack"])
                or rest == ["HEAD"]):
            self.rest = rest        # the whole service path, for PATH_INFO
            return "git", self.git_backend
        raise HubError(404, "Not Found")

    def prepare(self):
        self.extra_headers = {}
        hdr = self.headers.get("Authorization")
        token = self.app.auth.token_from_header(hdr)
        if hdr is not None:
            self.who = self.app.auth.principal(token)
            if self.who is None:
                extra = {}
                if self.route_name == "git":
                    extra["WWW-Authenticate"] = 'Basic realm="localhub"'
                raise HubError(401, "Invalid credentials in Authorization "
                               "header", headers=extra)
        bucket = ("resolvers" if self.route_name in ("resolve", "raw",
                                                     "resolve-cache")
                  else "api" if self.segs[:1] == ["api"] else "pages")
        caller = self.who.user if self.who else "anon:" + self.client_address[0]
        rl = self.app.ratelimit.check(bucket, caller)
        if rl is not None:
            allowed, headers = rl
            self.extra_headers.update(headers)
            if not allowed:
                raise HubError(429, "You have exceeded our hourly quotas for "
                               "action: %s. Retry later." % bucket)

    # --- helpers ---------------------------------------------------------
    def base_url(self):
        return "http://" + (self.headers.get("Host") or
                            "%s:%d" % self.server.server_address[:2])

    def repo_url(self, repo):
        return "%s/%s%s" % (self.base_url(), URL_PREFIX[repo.type], repo.id)

    def load_repo(self, need="read"):
        rtype, ns, name = self.repo_args
        repo = self.app.store.get_repo(rtype, ns, name)
        meta = repo.meta() if repo else {}
        self.log_extra["repo"] = "%ss/%s/%s" % (rtype, ns, name)
        if repo is None or not self.app.auth.can_read(self.who, meta, ns):
            msg = ("Repository Not Found for url: %s%s. Please make sure you "
                   "specified the correct `repo_id` and `repo_type`. If you "
                   "are trying to access a private or gated repo, make sure "
                   "you are authenticated." % (self.base_url(), self.raw_path))
            extra = {}
            if self.route_name == "git" and self.who is None:
                extra["WWW-Authenticate"] = 'Basic realm="localhub"'
            raise HubError(401 if self.who is None else 404, msg,
                           "RepoNotFound", headers=extra)
        if need == "download" and not self.app.auth.can_download(
                self.who, meta, ns):
            if self.who is None:
                raise HubError(401, "You must be authenticated to access it. "
                               "Access to %s %s is restricted." % (
                                   rtype, repo.id), "GatedRepo",
                               headers=self.git_challenge())
            raise HubError(403, "Access to %s %s is restricted and you are "
                           "not in the authorized list. Visit %s to ask for "
                           "access." % (rtype, repo.id, self.repo_url(repo)),
                           "GatedRepo")
        if need == "write" and not self.app.auth.can_write(self.who, meta, ns):
            if self.who is None:
                raise HubError(401, "You must be authenticated to write to "
                               "this repo", headers=self.git_challenge())
            raise HubError(403, "You don't have the rights to write to "
                           "%s %s: your token %s." % (
                               rtype, repo.id,
                               "is read-only" if not self.who.can_write
                               else "has no access to this namespace"))
        self.repo = repo
        return repo

    def git_challenge(self):
        """git (curl) sends credentials only after a 401 with a Basic
        challenge, so every 401 of a git route carries one."""
        if self.route_name == "git":
            return {"WWW-Authenticate": 'Basic realm="localhub"'}
        return {}

    def split_rev(self, segs):
        """Split the revision off a segment list: (rev, rest)."""
        if not segs or segs[0] == "":
            raise HubError(404, "Invalid rev id: (empty)", "RevisionNotFound")
        repo = self.repo
        first = unq(segs[0])
        refs = repo.refs()
        if repo.resolve(first, refs)[0] is not None:
            return first, segs[1:], refs
        for k in range(len(segs), 1, -1):
            cand = "/".join(unq(x) for x in segs[:k])
            if repo.is_ref_name(cand, refs):
                return cand, segs[k:], refs
        return first, segs[1:], refs

    def resolve_rev(self, rev, refs=None):
        commit, ref = self.repo.resolve(rev, refs)
        if commit is None:
            raise HubError(404, "Invalid rev id: %s" % rev, "RevisionNotFound")
        return commit, ref

    def rev_from_rest(self, allow_path=False):
        rev, rest, refs = self.split_rev(self.rest)
        path = "/".join(unq(x) for x in rest).strip("/")
        if rest and not allow_path and path:
            raise HubError(404, "Not Found")
        return rev, path, refs

    def tree_entry_json(self, e, commit, expand):
        d = {"type": e["type"], "oid": e["oid"], "size": e["size"],
             "path": e["path"]}
        if "lfs" in e:
            d["lfs"] = dict(e["lfs"])
        if expand:
            d["lastCommit"] = self.repo.last_commit_for(commit, e["path"])
            d["securityFileStatus"] = {"status": "safe"}
        return d

    def paginate(self, items, default_size, max_size, key):
        """Cursor pagination with a Link header; returns (page, headers).
        The cursor pins the commit so pages never mix two commits."""
        limit = self.q("limit")
        size = default_size
        if limit is not None:
            try:
                size = max(1, min(int(limit), max_size))
            except ValueError:
                raise HubError(400, "Invalid limit")
        offset = 0
        cur = self.q("cursor")
        if cur:
            try:
                c = json.loads(base64.urlsafe_b64decode(cur.encode()))
                offset = int(c["o"])
                if c["k"] != key:
                    raise ValueError()
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise HubError(400, "Invalid cursor")
        page = items[offset:offset + size]
        headers = {}
        if offset + size < len(items):
            nxt = base64.urlsafe_b64encode(json.dumps(
                {"o": offset + size, "k": key}).encode()).decode()
            q = [(k, v) for k, vs in self.query.items() if k != "cursor"
                 for v in vs]
            q.append(("cursor", nxt))
            url = "%s%s?%s" % (self.base_url(), self.raw_path,
                               urllib.parse.urlencode(q))
            headers["Link"] = '<%s>; rel="next"' % url
        return page, headers

    # --- identity --------------------------------------------------------
    def whoami(self):
        if self.who is None:
            raise HubError(401, "Invalid username or password.")
        w = self.who
        self.send_json(200, {
            "type": "user", "id": hashlib.sha1(w.user.encode()).hexdigest()[:24],
            "name": w.user, "fullname": w.fullname,
            "email": "%s@localhub.invalid" % w.user, "emailVerified": True,
            "canPay": False, "isPro": False, "periodEnd": None,
            "avatarUrl": "/avatars/%s.svg" % w.user,
            "orgs": [{"type": "org", "name": o, "fullname": o,
                      "roleInOrg": "admin"} for o in w.orgs],
            "auth": {"type": "access_token", "accessToken": {
                "displayName": w.token_name, "role": w.role,
                "createdAt": "2024-01-01T00:00:00.000Z"}},
        })

    def validate_yaml(self):
        self.read_body()
        self.send_json(200, {"errors": [], "warnings": []})

    # --- repositories ----------------------------------------------------
    def repo_create(self):
        body = self.read_json()
        if self.who is None:
            raise HubError(401, "You must be authenticated to create a repo")
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise HubError(400, "Invalid request: name is required")
        name = body["name"]
        ns = body.get("organization") or self.who.user
        if "/" in name:
            ns, name = name.split("/", 1)
        rtype = body.get("type") or "model"
        if rtype not in URL_PREFIX:
            raise HubError(400, "Invalid repo type: %r" % rtype)
        if not (self.who.can_write and self.who.owns(ns)):
            raise HubError(403, "You don't have the rights to create a %s "
                           "under the namespace %r" % (rtype, ns))
        private = bool(body.get("private")) or body.get("visibility") == "private"
        gated = body.get("gated") or False
        author = (self.who.user, "%s@localhub.invalid" % self.who.user)
        try:
            repo = self.app.store.create_repo(rtype, ns, name, private=private,
                                              gated=gated, author=author,
                                              sdk=body.get("sdk"))
        except StoreError as e:
            if e.status == 409:
                raise HubError(409, "You already created this %s repo" % rtype)
            raise HubError(e.status, e.message)
        files = body.get("files") or []
        if files:
            ops = []
            for f in files:
                content = base64.b64decode(f.get("content", ""))
                ops.append(("add", validate_repo_path(f["path"]), content))
            head = repo.refs()["refs/heads/main"]
            repo.make_commit("refs/heads/main", head, ops, "Add files", author)
        self.send_json(200, {"url": self.repo_url(repo), "name": repo.id,
                             "id": repo.meta()["_id"]})

    def repo_delete(self):
        body = self.read_json()
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise HubError(400, "Invalid request: name is required")
        name = body["name"]
        ns = body.get("organization") or (self.who.user if self.who else "")
        if "/" in name:
            ns, name = name.split("/", 1)
        self.repo_args = (body.get("type") or "model", ns, name)
        repo = self.load_repo("write")
        self.app.store.delete_repo(repo)
        self.send_json(200, {})

    def settings(self):
        repo = self.load_repo("write")
        body = self.read_json()
        if not isinstance(body, dict):
            raise HubError(400, "Invalid settings")
        upd = {}
        if "private" in body:
            upd["private"] = bool(body["private"])
        if "gated" in body:
            if body["gated"] not in (False, "auto", "manual"):
                raise HubError(400, "gated must be false, auto or manual")
            upd["gated"] = body["gated"]
        repo.set_meta(**upd)
        self.send_json(200, {})

    def repo_info_obj(self, repo, commit, blobs):
        meta = repo.meta()
        ci = repo.commit_info(commit)
        tree = repo.tree(commit)
        files = [e for e in tree.entries if e["type"] == "file"]
        sib = []
        for e in files:
            s = {"rfilename": e["path"]}
            if blobs:
                s["size"] = e["size"]
                s["blobId"] = e["oid"]
                if "lfs" in e:
                    s["lfs"] = {"size": e["lfs"]["size"],
                                "sha256": e["lfs"]["oid"],
                                "pointerSize": e["lfs"]["pointerSize"]}
            sib.append(s)
        d = {"_id": meta.get("_id"), "id": repo.id, "author": repo.ns,
             "sha": commit, "lastModified": iso_date(ci["time"]),
             "createdAt": iso_date(meta.get("created", ci["time"])),
             "private": bool(meta.get("private")),
             "gated": meta.get("gated") or False, "disabled": False,
             "downloads": 0, "likes": 0, "tags": [], "siblings": sib,
             "usedStorage": sum(e["size"] for e in files)}
        if repo.type == "model":
            d["modelId"] = repo.id
            d["library_name"] = None
            d["pipeline_tag"] = None
        if repo.type == "space":
            d["sdk"] = meta.get("sdk", "static")
        expand = self.query.get("expand") or self.query.get("expand[]")
        if expand:
            keep = set(expand) | {"_id", "id"}
            d = {k: v for k, v in d.items() if k in keep}
        return d

    def repo_info(self):
        repo = self.load_repo()
        if self.rest:
            rev, _, refs = self.rev_from_rest()
        else:
            rev, refs = "HEAD", None
        commit, _ = self.resolve_rev(rev, refs)
        self.send_json(200, self.repo_info_obj(repo, commit,
                                               self.qbool("blobs")))

    # --- reading ---------------------------------------------------------
    def tree(self):
        self.load_repo()
        rev, path, refs = self.rev_from_rest(allow_path=True)
        commit, _ = self.resolve_rev(rev, refs)
        self.extra_headers["X-Repo-Commit"] = commit
        t = self.repo.tree(commit)
        if not t.is_dir(path):
            raise HubError(404, "Entry not found: %s" % path, "EntryNotFound",
                           headers={"X-Repo-Commit": commit})
        if self.qbool("recursive"):
            prefix = path + "/"
            items = t.entries if not path else [
                e for e in t.entries if e["path"].startswith(prefix)]
        else:
            items = t.children.get(path, [])
        expand = self.qbool("expand")
        # --page-size caps pages even when the client asks for more, so
        # tests can force many pages on any client.
        default = min(50 if expand else 1000, self.app.page_size)
        page, headers = self.paginate(
            items, default, min(100 if expand else 1000, self.app.page_size),
            commit)
        self.send_json(200, [self.tree_entry_json(e, commit, expand)
                             for e in page], headers)

    def paths_info(self):
        self.load_repo()
        rev, _, refs = self.rev_from_rest()
        commit, _ = self.resolve_rev(rev, refs)
        ctype = self.headers.get("Content-Type", "")
        raw = self.read_body()
        if "json" in ctype:
            try:
                body = json.loads(raw or b"{}")
                paths = body.get("paths") or []
                expand = bool(body.get("expand"))
            except (ValueError, AttributeError):
                raise HubError(400, "Invalid JSON body")
        else:
            form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"),
                                         keep_blank_values=True)
            paths = form.get("paths", [])
            expand = (form.get("expand", ["false"])[-1].lower()
                      in ("1", "true"))
        if not isinstance(paths, list) or not all(isinstance(p, str)
                                                  for p in paths):
            raise HubError(400, "paths must be a list of strings")
        if len(paths) > 1000:
            raise HubError(413, "too many parameters")
        t = self.repo.tree(commit)
        out, seen = [], set()
        for p in paths:
            p = p.strip("/")
            if p in seen:
                continue
            seen.add(p)
            e = t.by_path.get(p)
            if e is not None:
                out.append(self.tree_entry_json(e, commit, expand))
        self.extra_headers["X-Repo-Commit"] = commit
        self.send_json(200, out)

    def list_refs(self):
        repo = self.load_repo()
        refs = repo.refs()
        out = {"branches": [], "tags": [], "converts": []}
        prs = []
        for name, sha in sorted(refs.items()):
            if name.startswith("refs/heads/"):
                out["branches"].append({"name": name[11:], "ref": name,
                                        "targetCommit": sha})
            elif name.startswith("refs/tags/"):
                out["tags"].append({"name": name[10:], "ref": name,
                                    "targetCommit": sha})
            elif name.startswith("refs/convert/"):
                out["converts"].append({"name": name[13:], "ref": name,
                                        "targetCommit": sha})
            elif name.startswith("refs/pr/"):
                prs.append({"name": name, "ref": name, "targetCommit": sha})
        if self.qbool("include_prs"):
            prs.sort(key=lambda r: int(r["name"].rsplit("/", 1)[1])
                     if r["name"].rsplit("/", 1)[1].isdigit() else 0)
            out["pullRequests"] = prs
        self.send_json(200, out)

    def list_commits(self):
        repo = self.load_repo()
        rev, _, refs = self.rev_from_rest()
        commit, _ = self.resolve_rev(rev, refs)
        try:
            limit = max(1, min(int(self.q("limit") or 50), 1000))
            page = max(0, int(self.q("p") or 0))
        except ValueError:
            raise HubError(400, "Invalid limit or page")
        total = repo.count_commits(commit)
        items = repo.log(commit, page * limit, limit)
        formatted = "formatted" in (self.query.get("expand[]", []) +
                                    self.query.get("expand", []))
        out = []
        for c in items:
            d = {"id": c["id"], "title": c["title"], "message": c["message"],
                 "authors": [{"user": c["author"],
                              "avatar": "/avatars/%s.svg" % c["author"]}],
                 "date": iso_date(c["time"])}
            if formatted:
                d["formatted"] = {"title": c["title"], "message": c["message"]}
            out.append(d)
        headers = {"X-Total-Count": str(total)}
        if (page + 1) * limit < total:
            q = [(k, v) for k, vs in self.query.items() if k != "p"
                 for v in vs] + [("p", str(page + 1))]
            headers["Link"] = '<%s%s?%s>; rel="next"' % (
                self.base_url(), self.raw_path, urllib.parse.urlencode(q))
        self.send_json(200, out, headers)

    def resolve(self):
        self.serve_file(raw=False)

    def raw(self):
        self.serve_file(raw=True)

    def serve_file(self, raw):
        self.load_repo("download")
        rev, rest, refs = self.split_rev(self.rest)
        path = "/".join(unq(x) for x in rest)
        commit, _ = self.resolve_rev(rev, refs)
        self.extra_headers["X-Repo-Commit"] = commit
        e = self.repo.tree(commit).by_path.get(path)
        if e is None or e["type"] != "file":
            raise HubError(404, "Entry not found", "EntryNotFound",
                           headers={"X-Repo-Commit": commit})
        lfs = e.get("lfs")
        ci = self.repo.commit_info(commit)
        headers = {"Last-Modified": time.strftime(
            "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ci["time"]))}
        if lfs and not raw:
            exp = int(time.time()) + self.app.url_lifetime
            headers.update({
                "Location": self.app.cdn_url(lfs["oid"], lfs["size"], exp,
                                             path.rsplit("/", 1)[-1]),
                "X-Linked-Etag": '"%s"' % lfs["oid"],
                "X-Linked-Size": str(lfs["size"]),
                "ETag": '"%s"' % lfs["oid"],
                "Content-Type": "text/plain; charset=utf-8",
            })
            self.send_bytes(302, b"", headers)
            return
        etag = '"%s"' % e["oid"]
        headers["ETag"] = etag
        if (not raw and self.app.resolve_cache_redirect
                and not self.repo.meta().get("private")):
            loc = "/api/resolve-cache/%ss/%s/%s/%s?etag=%s" % (
                self.repo.type, self.repo.id, commit,
                urllib.parse.quote(path), urllib.parse.quote(etag))
            headers["Location"] = loc
            self.send_bytes(307, b"", headers)
            return
        self.send_blob(e, headers)

    def send_blob(self, e, headers):
        etag = '"%s"' % e["oid"]
        inm = self.headers.get("If-None-Match")
        if inm and inm.replace("W/", "").strip() == etag:
            self.send_bytes(304, b"", headers)
            return
        size = e["lfs"]["pointerSize"] if "lfs" in e else e["size"]
        path = self.repo.blob_file(e["oid"])
        ctype = "text/plain; charset=utf-8"
        self.send_file(path, size, headers, ctype)

    def resolve_cache(self):
        self.load_repo("download")
        if len(self.rest) < 2:
            raise HubError(404, "Not Found")
        commit = unq(self.rest[0])
        path = "/".join(unq(x) for x in self.rest[1:])
        if not HEX40_RE.match(commit) or not self.app.store.commit_exists(
                self.repo, commit):
            raise HubError(404, "Invalid rev id: %s" % commit,
                           "RevisionNotFound")
        self.extra_headers["X-Repo-Commit"] = commit
        e = self.repo.tree(commit).by_path.get(path)
        if e is None or e["type"] != "file" or "lfs" in e:
            raise HubError(404, "Entry not found", "EntryNotFound")
        self.send_blob(e, {"ETag": '"%s"' % e["oid"]})

    # --- writing ---------------------------------------------------------
    def write_target(self, refs, rev, create_pr):
        """The ref a commit goes to, and its current head."""
        repo = self.repo
        if create_pr:
            if "refs/heads/" + rev not in refs:
                raise HubError(404, "Invalid rev id: %s (a pull request "
                               "must target a branch)" % rev,
                               "RevisionNotFound")
            n = repo.meta().get("pr_counter", 0) + 1
            while "refs/pr/%d" % n in refs:
                n += 1
            return "refs/pr/%d" % n, refs["refs/heads/" + rev], n
        for ref in ("refs/heads/" + rev, rev):
            if ref in refs and (ref.startswith("refs/heads/") or
                                re.match(r"^refs/pr/\d+$", ref)):
                return ref, refs[ref], None
        if repo.resolve(rev, refs)[0] is not None:
            raise HubError(400, "Invalid rev id: %s is not a branch" % rev)
        raise HubError(404, "Invalid rev id: %s" % rev, "RevisionNotFound")

    def preupload(self):
        repo = self.load_repo("write")
        rev, _, refs = self.rev_from_rest()
        commit, _ = self.resolve_rev(rev, refs)
        body = self.read_json()
        files = body.get("files") if isinstance(body, dict) else None
        if not isinstance(files, list):
            raise HubError(400, "Invalid preupload request: files missing")
        if body.get("gitAttributes") is not None:
            attrs = GitAttributes(body["gitAttributes"])
        else:
            attrs = repo.gitattributes(commit)
        tree = repo.tree(commit)
        e = tree.by_path.get(".gitignore")
        ignore = GitIgnore(repo.read_blob(e["oid"]).decode("utf-8", "replace")
                           if e is not None and e["type"] == "file" else "")
        out = []
        for f in files:
            try:
                path = validate_repo_path(f["path"])
                size = int(f.get("size", 0))
                sample = base64.b64decode(f.get("sample") or "")
            except (KeyError, TypeError, ValueError, binascii.Error):
                raise HubError(400, "Invalid preupload entry")
            if size == 0:
                mode = "regular"
            elif attrs.is_lfs(path) or size > REGULAR_MAX or b"\0" in sample:
                mode = "lfs"
            else:
                mode = "regular"
            d = {"path": f["path"], "uploadMode": mode,
                 "shouldIgnore": ignore.ignores(path)}
            e = tree.by_path.get(path)
            if e is not None and e["type"] == "file":
                d["oid"] = e["lfs"]["oid"] if "lfs" in e else e["oid"]
            out.append(d)
        self.send_json(200, {"files": out, "commitOid": commit})

    def iter_ndjson(self):
        reader = self.body_reader(self.app.commit_cap)
        buf = b""
        while True:
            data = reader.read()
            if data:
                buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield line
            if not data:
                break
        self._body = b""
        if buf.strip():
            yield buf

    def commit(self):
        repo = self.load_repo("write")
        rev, _, refs = self.rev_from_rest()
        create_pr = self.qbool("create_pr")
        header = None
        ops = []
        for line in self.iter_ndjson():
            try:
                obj = json.loads(line)
                key, value = obj["key"], obj["value"]
            except (ValueError, KeyError, TypeError):
                raise HubError(400, "Invalid NDJSON line in commit payload")
            if header is None:
                if key != "header":
                    raise HubError(400, "The first line must be the header")
                header = value
                continue
            ops.append((key, value))
        if header is None or not isinstance(header, dict):
            raise HubError(400, "Missing commit header")
        summary = header.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            raise HubError(400, "The commit summary must not be empty")
        description = header.get("description") or ""
        parent_req = header.get("parentCommit")
        if parent_req is not None and not re.match(r"^[0-9a-f]{5,40}$",
                                                   str(parent_req)):
            raise HubError(400, "Invalid parentCommit")
        who = self.who
        author = (who.user, "%s@localhub.invalid" % who.user)
        message = summary + ("\n\n" + description if description else "")
        with repo.lock:
            refs = repo.refs()
            ref, head, pr_num = self.write_target(refs, rev, create_pr)
            parent = head
            if parent_req:
                if create_pr:
                    c, _ = repo.resolve(parent_req, refs)
                    full = c or self.expand_short(parent_req)
                    if full is None:
                        raise HubError(400, "Invalid parentCommit")
                    parent = full
                elif not head.startswith(parent_req):
                    raise HubError(412, "The branch was updated since you "
                                   "opened this page. Please refresh and "
                                   "try again.")
            git_ops = self.build_ops(repo, parent, ops)
            try:
                new = repo.make_commit(ref, parent, git_ops, message, author,
                                       old=None if pr_num else head)
            except StoreError as e:
                raise HubError(e.status, e.message)
            if pr_num:
                repo.set_meta(pr_counter=pr_num)
        res = {"success": True, "commitOid": new,
               "commitUrl": "%s/commit/%s" % (self.repo_url(repo), new),
               "commitMessage": message, "hookOutput": ""}
        if pr_num:
            res["pullRequestUrl"] = "%s/discussions/%d" % (self.repo_url(repo),
                                                            pr_num)
        self.send_json(200, res)

    def expand_short(self, prefix):
        p = self.repo.git("rev-parse", "--verify", "-q",
                          prefix + "^{commit}", check=False)
        out = p.stdout.decode().strip()
        return out if p.returncode == 0 and HEX40_RE.match(out) else None

    def build_ops(self, repo, parent, ops):
        tree = repo.tree(parent)
        files = {e["path"] for e in tree.entries if e["type"] == "file"}
        attrs_text = None
        adds = {}
        deletes = []
        for key, v in ops:
            if not isinstance(v, dict):
                raise HubError(400, "Invalid operation %r" % key)
            if key == "file":
                path = validate_repo_path(v.get("path"))
                enc = v.get("encoding", "base64")
                try:
                    if enc == "base64":
                        data = base64.b64decode(v.get("content", ""),
                                                validate=True)
                    elif enc in ("utf-8", "utf8"):
                        data = v.get("content", "").encode("utf-8")
                    else:
                        raise ValueError(enc)
                except (ValueError, binascii.Error, AttributeError):
                    raise HubError(400, "Invalid content for %s" % path)
                if len(data) > REGULAR_MAX:
                    raise HubError(400, "Your push was rejected because it "
                                   "contains files larger than 10 MiB. "
                                   "Please use https://git-lfs.github.com/ "
                                   "to store large files. Offending file: "
                                   "%s" % path)
                adds[path] = data
                if path == ".gitattributes":
                    attrs_text = data.decode("utf-8", "replace")
            elif key == "lfsFile":
                path = validate_repo_path(v.get("path"))
                oid = v.get("oid")
                if v.get("algo", "sha256") != "sha256" or not SHA256_RE.match(
                        str(oid)):
                    raise HubError(400, "Invalid LFS oid for %s" % path)
                size = v.get("size")
                if size is None and self.app.store.lfs_has(oid):
                    size = os.path.getsize(self.app.store.lfs_path(oid))
                if size is None or not self.app.store.lfs_has(oid, int(size)):
                    raise HubError(400, "Your push was rejected because an "
                                   "LFS pointer pointed to a file that does "
                                   "not exist. Offending file: %s" % path)
                adds[path] = lfs_pointer(oid, int(size))
                adds.setdefault(("lfs", path), True)
            elif key == "deletedFile":
                path = validate_repo_path(v.get("path"))
                if path not in files and path not in adds:
                    raise HubError(404, "A file with this name doesn't exist: "
                                   "%s" % path, "EntryNotFound")
                deletes.append(path)
                adds.pop(path, None)
                files.discard(path)
            elif key == "deletedFolder":
                path = validate_repo_path(v.get("path").rstrip("/"))
                if not tree.is_dir(path):
                    raise HubError(404, "A folder with this name doesn't "
                                   "exist: %s" % path, "EntryNotFound")
                deletes.append(path)
                files = {f for f in files if not f.startswith(path + "/")}
            else:
                raise HubError(400, "Unknown operation key %r" % key)
        lfs_paths = [k[1] for k in adds if isinstance(k, tuple)]
        adds = {k: v for k, v in adds.items() if not isinstance(k, tuple)}
        # File/folder clashes in the resulting tree are refused.
        final = files | set(adds)
        dirs = set()
        for f in final:
            parts = f.split("/")
            for i in range(1, len(parts)):
                dirs.add("/".join(parts[:i]))
        clash = sorted(final & dirs)
        if clash:
            raise HubError(400, "A file and a folder cannot share the path "
                           "%r" % clash[0])
        # Paths committed as LFS files become LFS-tracked (as on the Hub).
        if lfs_paths:
            if attrs_text is None:
                e = tree.by_path.get(".gitattributes")
                attrs_text = (repo.read_blob(e["oid"]).decode("utf-8", "replace")
                              if e is not None and ".gitattributes" not in deletes
                              else "")
            attrs = GitAttributes(attrs_text)
            missing = [p for p in lfs_paths if p in adds and not attrs.is_lfs(p)]
            if missing:
                if attrs_text and not attrs_text.endswith("\n"):
                    attrs_text += "\n"
                for p in missing:
                    attrs_text += "%s filter=lfs diff=lfs merge=lfs -text\n" % (
                        p.replace(" ", "[[:space:]]"))
                adds[".gitattributes"] = attrs_text.encode()
        out = [("delete", p) for p in deletes]
        out += [("add", p, d) for p, d in adds.items()]
        return out

    def branch_create(self):
        repo = self.load_repo("write")
        if len(self.rest) != 1:
            raise HubError(404, "Not Found")
        branch = unq(self.rest[0])
        body = self.read_json() or {}
        if not isinstance(body, dict):
            raise HubError(400, "Invalid body")
        if (branch.startswith("refs/") or subprocess.run(
                ["git", "check-ref-format", "refs/heads/" + branch]
                ).returncode != 0):
            raise HubError(400, "Invalid branch name: %r" % branch)
        who = self.who
        author = (who.user, "%s@localhub.invalid" % who.user)
        with repo.lock:
            refs = repo.refs()
            ref = "refs/heads/" + branch
            old = refs.get(ref)
            if old is not None and not body.get("overwrite"):
                raise HubError(409, "Reference already exists: %s" % ref)
            if body.get("emptyBranch"):
                try:
                    repo.make_commit(ref, None, [], "Empty branch", author,
                                     old=old)
                except StoreError as e:
                    raise HubError(409, e.message)
            else:
                start = body.get("startingPoint") or "HEAD"
                commit, _ = self.resolve_rev(start, refs)
                try:
                    repo.update_ref(ref, commit, old)
                except StoreError as e:
                    raise HubError(409, e.message)
        self.send_json(200, {})

    def branch_delete(self):
        repo = self.load_repo("write")
        branch = unq(self.rest[0]) if len(self.rest) == 1 else ""
        with repo.lock:
            refs = repo.refs()
            if "refs/heads/" + branch not in refs:
                raise HubError(404, "Invalid rev id: %s" % branch,
                               "RevisionNotFound")
            if branch == repo.default_branch():
                raise HubError(403, "You cannot delete the default branch")
            repo.delete_ref("refs/heads/" + branch)
        self.send_json(200, {})

    def tag_create(self):
        repo = self.load_repo("write")
        rev, _, refs = self.rev_from_rest()
        body = self.read_json()
        if not isinstance(body, dict) or not isinstance(body.get("tag"), str):
            raise HubError(400, "Invalid body: tag is required")
        tag = body["tag"]
        if subprocess.run(["git", "check-ref-format", "refs/tags/" + tag]
                          ).returncode != 0:
            raise HubError(400, "Invalid tag name: %r" % tag)
        with repo.lock:
            refs = repo.refs()
            commit, _ = self.resolve_rev(rev, refs)
            if "refs/tags/" + tag in refs:
                raise HubError(409, "Tag %s already exists" % tag)
            msg = body.get("message")
            if msg:
                who = self.who
                repo.git("tag", "-a", "-m", msg, tag, commit, env={
                    "GIT_COMMITTER_NAME": who.user,
                    "GIT_COMMITTER_EMAIL": "%s@localhub.invalid" % who.user})
            else:
                repo.update_ref("refs/tags/" + tag, commit, None)
        self.send_json(200, {})

    def tag_delete(self):
        repo = self.load_repo("write")
        tag = "/".join(unq(x) for x in self.rest)
        with repo.lock:
            if "refs/tags/" + tag not in repo.refs():
                raise HubError(404, "Invalid rev id: %s" % tag,
                               "RevisionNotFound")
            repo.delete_ref("refs/tags/" + tag)
        self.send_json(200, {})

    # --- LFS -------------------------------------------------------------
    def lfs_batch(self):
        body = self.read_json()
        if not isinstance(body, dict):
            raise HubError(422, "Invalid batch request")
        op = body.get("operation")
        if op not in ("upload", "download"):
            raise HubError(422, "Invalid operation %r" % op)
        algo = body.get("hash_algo")
        if algo not in (None, "sha256", "sha_256"):
            raise HubError(409, "Unsupported hash algorithm %r" % algo)
        repo = self.load_repo("write" if op == "upload" else "download")
        objects = body.get("objects")
        if not isinstance(objects, list) or len(objects) > 1000:
            raise HubError(422, "Invalid objects")
        transfers = body.get("transfers") or ["basic"]
        store = self.app.store
        exp = int(time.time()) + self.app.url_lifetime
        out = []
        used_multipart = False
        for o in objects:
            oid = o.get("oid") if isinstance(o, dict) else None
            size = o.get("size") if isinstance(o, dict) else None
            if not SHA256_RE.match(str(oid)) or not isinstance(size, int) \
                    or size < 0:
                out.append({"oid": str(oid), "size": size, "error": {
                    "code": 422, "message": "Invalid object"}})
                continue
            d = {"oid": oid, "size": size, "authenticated": True}
            if op == "download":
                if store.lfs_has(oid, size):
                    d["actions"] = {"download": {
                        "href": self.app.cdn_url(oid, size, exp),
                        "header": {}, "expires_in": self.app.url_lifetime}}
                else:
                    d["error"] = {"code": 404,
                                  "message": "Object does not exist"}
            elif not store.lfs_has(oid, size):
                thresh = self.app.multipart_threshold
                if size >= thresh and "multipart" in transfers:
                    used_multipart = True
                    chunk = self.app.multipart_chunk
                    nparts = max(1, -(-size // chunk))
                    header = {"chunk_size": str(chunk)}
                    for i in range(1, nparts + 1):
                        header["%05d" % i] = self.app.cdn_upload_url(
                            oid, size, exp, part=i)
                    href = self.app.complete_url(self.repo_url(repo), oid,
                                                 size, exp)
                    d["actions"] = {"upload": {"href": href, "header": header,
                                               "expires_in": self.app.url_lifetime}}
                else:
                    d["actions"] = {"upload": {
                        "href": self.app.cdn_upload_url(oid, size, exp),
                        "header": {}, "expires_in": self.app.url_lifetime}}
                # The objects are "authenticated" (git-lfs then sends no
                # credentials of its own, so none reach the CDN): the verify
                # call back to the hub carries the caller's Authorization.
                d["actions"]["verify"] = {
                    "href": "%s.git/info/lfs/objects/verify" % self.repo_url(repo),
                    "header": {"Authorization":
                               self.headers.get("Authorization", "")}}
            out.append(d)
        self.send_bytes(200, json.dumps(
            {"transfer": "multipart" if used_multipart else "basic",
             "objects": out, "hash_algo": "sha256"}).encode(), {},
            "application/vnd.git-lfs+json")

    def lfs_verify(self):
        self.load_repo("write")
        body = self.read_json()
        oid = body.get("oid") if isinstance(body, dict) else None
        size = body.get("size") if isinstance(body, dict) else None
        if not self.app.store.lfs_has(str(oid), size if isinstance(size, int)
                                      else None):
            raise HubError(404, "Object %s was not uploaded" % oid)
        self.send_bytes(200, b"{}", {}, "application/vnd.git-lfs+json")

    def lfs_complete(self):
        oid = self.segs[-1]
        size = self.app.check_signature("complete", oid, self.query)
        body = self.read_json()
        if not isinstance(body, dict) or body.get("oid") != oid:
            raise HubError(400, "Invalid completion request")
        parts = body.get("parts")
        if not isinstance(parts, list) or not parts:
            raise HubError(400, "Invalid completion request: parts")
        self.app.assemble_multipart(oid, size, parts)
        self.send_json(200, {"success": True})

    def lfs_locks(self):
        self.read_body()
        raise HubError(404, "Locking is not supported")

    # --- git smart HTTP --------------------------------------------------
    def git_backend(self):
        push = (self.rest == ["git-receive-pack"] or
                self.q("service") == "git-receive-pack")
        repo = self.load_repo("write" if push else "download")
        data = self.read_body(cap=1 << 30)
        env = dict(os.environ)
        env.update({
            "GIT_PROJECT_ROOT": os.path.dirname(repo.path),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + os.path.basename(repo.path) + "/" +
                         "/".join(self.rest),
            "REQUEST_METHOD": self.command,
            "QUERY_STRING": self.raw_query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(data)),
            "REMOTE_ADDR": self.client_address[0],
        })
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.who is not None:
            env["REMOTE_USER"] = self.who.user
        p = subprocess.run(["git", "http-backend"], input=data, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = p.stdout
        head, _, body = out.partition(b"\r\n\r\n")
        if not _:
            head, _, body = out.partition(b"\n\n")
        status = 200
        headers = {}
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            elif k:
                headers[k.strip()] = v.strip()
        headers.pop("Content-Length", None)
        if push:
            repo.generation += 1
        self.send_bytes(status, body, headers)
