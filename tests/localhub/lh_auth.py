"""Users, tokens and repository access for the local Hub.

The configuration file is JSON:

    {"users":  {"alice": {"fullname": "Alice", "orgs": ["acme"]}},
     "tokens": [{"token": "hf_...", "user": "alice", "role": "write"}]}

A token's role is "read" or "write".  A user may read a private repo and
write any repo of its own namespace or of one of its orgs; a gated repo's
files are readable by its owners and by the users in its `gated_access`
setting.
"""

import base64
import json

DEFAULT_CONFIG = {
    "users": {"demo": {"fullname": "Demo User", "orgs": ["demo-org"]}},
    "tokens": [
        {"token": "hf_localhub_demo_write", "user": "demo", "role": "write",
         "name": "demo-write"},
        {"token": "hf_localhub_demo_read", "user": "demo", "role": "read",
         "name": "demo-read"},
    ],
}


class Principal:
    def __init__(self, user, role, token_name, orgs, fullname):
        self.user = user
        self.role = role
        self.token_name = token_name
        self.orgs = orgs
        self.fullname = fullname

    def owns(self, ns):
        return ns == self.user or ns in self.orgs

    @property
    def can_write(self):
        return self.role == "write"


class Auth:
    def __init__(self, config=None):
        cfg = config or DEFAULT_CONFIG
        self.users = cfg.get("users", {})
        self.tokens = {}
        for t in cfg.get("tokens", []):
            if not t["token"].startswith("hf_"):
                raise ValueError("tokens must start with hf_")
            if t.get("role", "read") not in ("read", "write"):
                raise ValueError("token role must be read or write")
            self.tokens[t["token"]] = t

    @classmethod
    def from_file(cls, path):
        if not path:
            return cls()
        with open(path) as f:
            return cls(json.load(f))

    def token_from_header(self, header):
        """The token in an Authorization header, or None.  Accepts Bearer
        and Basic (password = token, as git sends it)."""
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip()
        if scheme.lower() == "basic":
            try:
                dec = base64.b64decode(value.strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return ""
            return dec.partition(":")[2]
        return ""

    def principal(self, token):
        t = self.tokens.get(token)
        if t is None:
            return None
        u = self.users.get(t["user"], {})
        return Principal(t["user"], t.get("role", "read"), t.get("name", ""),
                         list(u.get("orgs", [])), u.get("fullname", t["user"]))

    def can_read(self, who, repo_meta, ns):
        if not repo_meta.get("private"):
            return True
        return who is not None and (who.owns(ns) or
                                    who.user in repo_meta.get("access", []))

    def can_download(self, who, repo_meta, ns):
        if not repo_meta.get("gated"):
            return True
        return who is not None and (who.owns(ns) or
                                    who.user in repo_meta.get("gated_access", []))

    def can_write(self, who, repo_meta, ns):
        return (who is not None and who.can_write and
                (who.owns(ns) or who.user in repo_meta.get("writers", [])))
