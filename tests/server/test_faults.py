"""Fault injection: every mode, deterministic, switchable at run time."""

import http.client
import json
import socket
import time
import urllib.parse

import pytest

from conftest import http_request

SHARD = "model-00001-of-00001.safetensors"


@pytest.fixture(scope="module")
def fhub(tmp_path_factory):
    from conftest import LocalHub
    h = LocalHub(str(tmp_path_factory.mktemp("fhub")))
    h.seed("seed-model", "tester/m", "--no-history", "--shards", "1",
           "--shard-size", "1MiB")
    h.start()
    yield h
    h.stop()


@pytest.fixture(autouse=True)
def clean(fhub):
    fhub.admin("DELETE", "/faults")
    yield
    fhub.admin("DELETE", "/faults")


def cdn_url(h):
    r = h.get("/tester/m/resolve/main/" + SHARD)
    assert r.status == 302
    return r.header("Location")


def raw_get(url, headers=None, timeout=10):
    """GET that returns (status, bytes received, error) without raising on a
    cut connection: error is None, "short" (clean close before
    Content-Length) or "reset"."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    got = b""
    try:
        conn.request("GET", u.path + "?" + u.query, headers=headers or {})
        r = conn.getresponse()
        try:
            while True:
                chunk = r.read1(65536) if hasattr(r, "read1") else r.read(65536)
                if not chunk:
                    break
                got += chunk
            n = int(r.getheader("Content-Length"))
            return r.status, got, None if len(got) == n else "short"
        except http.client.IncompleteRead as e:
            return r.status, got + e.partial, "short"
        except (ConnectionResetError, ConnectionAbortedError):
            return r.status, got, "reset"
    finally:
        conn.close()


def test_fault_from_the_command_line(localhub_factory):
    h = localhub_factory("--fault", json.dumps(
        {"route": "refs", "nth": 1, "status": 500, "name": "boot"}))
    h.seed("seed-space", "spaces/tester/s")
    h.start()
    assert [f["name"] for f in h.admin("GET", "/faults")] == ["boot"]
    assert h.get("/api/spaces/tester/s/refs").status == 500
    assert h.get("/api/spaces/tester/s/refs").status == 200


def test_status_fault_on_nth_request_of_a_route(fhub):
    fhub.admin("POST", "/faults", {"route": "tree", "nth": 3, "status": 503})
    got = [fhub.get("/api/models/tester/m/tree/main").status for _ in range(5)]
    assert got == [200, 200, 503, 200, 200]
    # Other routes are untouched.
    assert fhub.get("/api/models/tester/m").status == 200
    (f,) = fhub.admin("GET", "/faults")
    assert f["seen"] == 5 and f["fired"] == 1


def test_fraction_is_deterministic(fhub):
    def run():
        fhub.admin("DELETE", "/faults")
        fhub.admin("POST", "/faults", {"route": "repo-info", "fraction": 0.3,
                                       "seed": 42, "status": 500})
        return [fhub.get("/api/models/tester/m").status for _ in range(40)]
    a, b = run(), run()
    assert a == b
    fails = a.count(500)
    assert 4 <= fails <= 20 and a.count(200) == 40 - fails


def test_times_limits_firing_and_429_carries_retry_after(fhub):
    fhub.admin("POST", "/faults", {"route": "resolve", "status": 429,
                                   "retry_after": 2, "times": 2})
    r1 = fhub.get("/tester/m/resolve/main/config.json")
    r2 = fhub.get("/tester/m/resolve/main/config.json")
    r3 = fhub.get("/tester/m/resolve/main/config.json")
    assert (r1.status, r2.status, r3.status) == (429, 429, 200)
    assert r1.header("Retry-After") == "2"
    assert r1.header("X-Error-Message")


def test_method_and_path_filters(fhub):
    fhub.admin("POST", "/faults", {"origin": "hub", "method": "HEAD",
                                   "path": "config\\.json$", "status": 500})
    assert fhub.request("HEAD", "/tester/m/resolve/main/config.json").status == 500
    assert fhub.get("/tester/m/resolve/main/config.json").status == 200
    assert fhub.request("HEAD", "/tester/m/resolve/main/README.md").status == 200


def test_reset_after_k_bytes(fhub):
    url = cdn_url(fhub)
    fhub.admin("POST", "/faults", {"origin": "cdn", "route": "cdn-get",
                                   "action": "reset", "after_bytes": 100000})
    status, got, err = raw_get(url)
    assert status == 200 and err == "reset"
    assert len(got) <= 100000
    status, got, err = raw_get(url)     # the rule fires on every request
    assert err is not None
    fhub.admin("DELETE", "/faults")
    status, got, err = raw_get(url)
    assert err is None and len(got) == 1 << 20


def test_truncated_body(fhub):
    url = cdn_url(fhub)
    fhub.admin("POST", "/faults", {"route": "cdn-get", "action": "truncate",
                                   "after_bytes": 5000, "times": 1})
    status, got, err = raw_get(url, {"Range": "bytes=0-99999"})
    assert status == 206 and err == "short" and len(got) == 5000
    status, got, err = raw_get(url, {"Range": "bytes=0-99999"})
    assert err is None and len(got) == 100000


def test_truncated_json(fhub):
    fhub.admin("POST", "/faults", {"route": "tree", "action": "truncate",
                                   "after_bytes": 10, "times": 1})
    status, got, err = raw_get(fhub.url + "/api/models/tester/m/tree/main?x=1")
    assert status == 200 and err == "short" and len(got) == 10


def test_stall_before_response_and_mid_body(fhub):
    fhub.admin("POST", "/faults", {"route": "repo-info", "action": "stall",
                                   "seconds": 1.5, "times": 1})
    t0 = time.time()
    with pytest.raises((socket.timeout, TimeoutError)):
        http_request(fhub.url + "/api/models/tester/m", timeout=0.5)
    time.sleep(1.2)
    t0 = time.time()
    assert fhub.get("/api/models/tester/m").status == 200
    assert time.time() - t0 < 1.0
    url = cdn_url(fhub)
    fhub.admin("POST", "/faults", {"route": "cdn-get", "action": "stall",
                                   "seconds": 1.0, "after_bytes": 1000,
                                   "times": 1})
    t0 = time.time()
    status, got, err = raw_get(url)
    assert err is None and len(got) == 1 << 20
    assert time.time() - t0 >= 1.0


def test_fault_rules_validate_and_can_be_removed(fhub):
    r = http_request(fhub.admin_url + "/faults", "POST", {},
                     {"action": "explode"})
    assert r.status == 400
    r = http_request(fhub.admin_url + "/faults", "POST", {}, {"bogus": 1})
    assert r.status == 400
    (f,) = fhub.admin("POST", "/faults", {"route": "tree", "status": 500})
    assert fhub.get("/api/models/tester/m/tree/main").status == 500
    fhub.admin("DELETE", "/faults/%d" % f["id"])
    assert fhub.get("/api/models/tester/m/tree/main").status == 200


def test_faulted_requests_are_logged(fhub):
    fhub.admin("POST", "/faults", {"route": "tree", "status": 503,
                                   "name": "flaky-tree", "times": 1})
    seq = fhub.mark()
    fhub.get("/api/models/tester/m/tree/main")
    (e,) = fhub.log_since(seq)
    assert e["status"] == 503 and e["fault"] == "flaky-tree"


def test_ignore_range_and_wrong_range(fhub):
    url = cdn_url(fhub)
    whole = http_request(url).body
    fhub.admin("POST", "/faults", {"route": "cdn-get", "action": "ignore_range",
                                   "times": 1})
    r = http_request(url, headers={"Range": "bytes=10-19"})
    assert r.status == 200 and r.body == whole
    fhub.admin("POST", "/faults", {"route": "cdn-get", "action": "wrong_range",
                                   "times": 1})
    r = http_request(url, headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == whole[11:21]
    assert r.header("Content-Range") == "bytes 11-20/%d" % len(whole)
    r = http_request(url, headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == whole[10:20]
