"""Deterministic fault injection and rate limiting for the local Hub.

A fault rule matches requests by origin, route name, method, a path regex
and the least offset a ranged request starts at (`min_offset`: a request
without a Range header starts at 0), and fires on the Nth match, on every match, or on a seeded-random fraction of
matches, at most `times` times.  Given the same sequence of requests, the same
requests fail: each rule owns its counter and its random generator.

Actions:
  status    answer with `status` (e.g. 500, 503, 429) instead of the route
  reset     send the headers and `after_bytes` bytes of body, then reset
            the connection (TCP RST)
  truncate  send the headers (with the full Content-Length) and
            `after_bytes` bytes of body, then close cleanly
  stall     sleep `seconds` after `after_bytes` bytes of body (0: before
            the response), then carry on normally
  ignore_range   answer a ranged file request with 200 and the whole body
  wrong_range    answer a ranged file request with the range one byte
                 later than asked (and a Content-Range saying so)
"""

import random
import re
import threading
import time

ACTIONS = ("status", "reset", "truncate", "stall", "ignore_range",
           "wrong_range")
RULE_KEYS = {"origin", "route", "method", "path", "action", "status",
             "retry_after", "fraction", "nth", "times", "after_bytes",
             "seconds", "seed", "name", "min_offset"}


class FaultRule:
    def __init__(self, spec, rule_id):
        unknown = set(spec) - RULE_KEYS
        if unknown:
            raise ValueError("unknown fault keys: %s" % ", ".join(sorted(unknown)))
        self.id = rule_id
        self.spec = dict(spec)
        self.name = spec.get("name") or "fault%d" % rule_id
        self.origin = spec.get("origin", "any")
        if self.origin not in ("any", "hub", "cdn"):
            raise ValueError("origin must be any, hub or cdn")
        self.route = spec.get("route", "*")
        self.method = spec.get("method")
        self.path_re = re.compile(spec["path"]) if spec.get("path") else None
        self.min_offset = int(spec.get("min_offset", 0))
        self.action = spec.get("action", "status")
        if self.action not in ACTIONS:
            raise ValueError("action must be one of %s" % ", ".join(ACTIONS))
        self.status = int(spec.get("status", 503))
        self.retry_after = spec.get("retry_after")
        self.fraction = float(spec.get("fraction", 1.0))
        self.nth = spec.get("nth")
        self.times = spec.get("times")
        self.after_bytes = int(spec.get("after_bytes", 0))
        self.seconds = float(spec.get("seconds", 0))
        self.rng = random.Random(spec.get("seed", 0))
        self.seen = 0
        self.fired = 0

    def matches(self, origin, route, method, path, offset):
        if self.origin != "any" and self.origin != origin:
            return False
        if self.route != "*" and self.route != route:
            return False
        if self.method and self.method.upper() != method:
            return False
        if self.path_re and not self.path_re.search(path):
            return False
        return offset >= self.min_offset

    def decide(self):
        """Count one matching request; return True if the fault fires."""
        self.seen += 1
        if self.times is not None and self.fired >= int(self.times):
            return False
        if self.nth is not None:
            fire = self.seen == int(self.nth)
        else:
            fire = self.rng.random() < self.fraction
        if fire:
            self.fired += 1
        return fire

    def describe(self):
        d = dict(self.spec)
        d.update(id=self.id, name=self.name, seen=self.seen, fired=self.fired)
        return d


class Faults:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.next_id = 1

    def add(self, spec):
        with self.lock:
            rule = FaultRule(spec, self.next_id)
            self.next_id += 1
            self.rules.append(rule)
            return rule.describe()

    def clear(self):
        with self.lock:
            self.rules = []

    def remove(self, rule_id):
        with self.lock:
            before = len(self.rules)
            self.rules = [r for r in self.rules if r.id != rule_id]
            return len(self.rules) != before

    def list(self):
        with self.lock:
            return [r.describe() for r in self.rules]

    def pick(self, origin, route, method, path, offset=0):
        """The first rule that fires for this request, or None; @offset:
        where its Range starts."""
        with self.lock:
            for r in self.rules:
                if r.matches(origin, route, method, path, offset) and r.decide():
                    return r
        return None


class RateLimiter:
    """Fixed-window request budgets per bucket (api, resolvers, pages) and
    per caller, answering with the Hub's RateLimit headers."""

    def __init__(self):
        self.lock = threading.Lock()
        self.limit = None
        self.window = 300
        self.buckets = ("api", "resolvers", "pages")
        self.counts = {}

    def configure(self, limit, window=300, buckets=None):
        with self.lock:
            self.limit = int(limit) if limit else None
            self.window = int(window)
            if buckets:
                self.buckets = tuple(buckets)
            self.counts = {}

    def describe(self):
        with self.lock:
            return {"limit": self.limit, "window": self.window,
                    "buckets": list(self.buckets)}

    def check(self, bucket, caller):
        """Count one request.  Returns None when unlimited, else
        (allowed, headers)."""
        with self.lock:
            if self.limit is None or bucket not in self.buckets:
                return None
            now = time.time()
            key = (bucket, caller)
            start, used = self.counts.get(key, (now, 0))
            if now - start >= self.window:
                start, used = now, 0
            reset = max(1, int(start + self.window - now + 0.999))
            allowed = used < self.limit
            if allowed:
                used += 1
            self.counts[key] = (start, used)
            remaining = self.limit - used
            headers = {
                "RateLimit": '"%s";r=%d;t=%d' % (bucket, remaining, reset),
                "RateLimit-Policy": '"fixed window";"%s";q=%d;w=%d' % (
                    bucket, self.limit, self.window),
            }
            if not allowed:
                headers["Retry-After"] = str(reset)
            return allowed, headers


class Link:
    """One network link that every upload to the CDN shares: `rate` bytes
    a second, first come first served (0: no limit).  take(n) returns
    once n more bytes fit."""

    def __init__(self, rate):
        self.rate = rate
        self.lock = threading.Lock()
        self.free_at = 0.0

    def take(self, n):
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            self.free_at = max(now, self.free_at) + n / self.rate
            wait = self.free_at - now
        if wait > 0:
            time.sleep(wait)
