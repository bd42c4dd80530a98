"""The dashboard, used in headless Chromium as a person would.

Starts the real `bazaar` binary on 127.0.0.1 (ports chosen by the kernel,
read from its stdout) with two testbed services, `alpha` (two versions, so
there is something to roll back to) and `beta` (subscribed to alpha's
`news`, with one dead letter), then in the browser: signs in (a wrong token
first), sees the services, sees alpha's request counter move under plain
HTTP traffic, replays beta's dead letter, rolls alpha back and forward
again, and checks each effect through the admin API and the gateway too.

Usage: dashboard_test.py BAZAAR_BINARY COMPONENTS_DIR
Exits non-zero on the first failed check; the host is stopped either way.
"""

import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

CHROMIUM = os.environ.get("BAZAAR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
# Every wait in the test is bounded by one of these.
STARTUP_S = 120
STEP_MS = 15_000
HTTP_TIMEOUT_S = 10
# Plain HTTP to 127.0.0.1, never through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def short(version):
    return version[:12]


def step(text):
    print(f"ok - {text}", flush=True)


class Host:
    """The bazaar binary in a temp dir; `stop` always runs."""

    def __init__(self, binary, components):
        self.dir = Path(tempfile.mkdtemp(prefix="bazaar-browser-"))
        self.token = secrets.token_hex(24)
        self.log_path = self.dir / "host.log"
        testbed = Path(components).resolve() / "testbed.wasm"
        if not testbed.is_file():
            raise SystemExit(f"{testbed} is missing: build components/ first")
        gateway = self.dir / "gateway.toml"
        gateway.write_text(f"""
[gateway]
listen = "127.0.0.1:0"
request_timeout_ms = 10000

[admin]
listen = "127.0.0.1:0"
token = "{self.token}"

[data]
dir = "{self.dir / 'data'}"

[events]
max_attempts = 2
retry_initial_ms = 50
retry_max_ms = 200

[services.alpha]
component = "{testbed}"
routes = ["/alpha/{{*rest}}"]
publishes = ["news"]
[services.alpha.config]
greeting = "hello from alpha"

[services.beta]
component = "{testbed}"
routes = ["/beta/{{*rest}}"]
subscribes = ["news"]
""")
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [binary, "--config", str(gateway), "serve"],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        lines = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        addresses = {}
        deadline = time.monotonic() + STARTUP_S
        while "loaded" not in addresses:
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                raise AssertionError(
                    f"the host did not start within {STARTUP_S} s (exit: {self.process.poll()})")
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                continue
            for key, marker in (("gateway", "gateway listening on "),
                                ("admin", "admin API listening on ")):
                if marker in line:
                    addresses[key] = line.split(marker, 1)[1].strip().removeprefix("http://")
            if "every service is loaded" in line:
                addresses["loaded"] = True
        self.gateway = addresses["gateway"]
        self.admin = addresses["admin"]

    def _pump(self, lines):
        for raw in self.process.stdout:
            text = raw.decode("utf-8", "replace")
            self.log.write(b"[stdout] " + raw)
            lines.put(text)
        lines.put(None)

    def stop(self, keep_dir=False):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def request(self, method, url, body=None, headers=None, token=True):
        """(status, headers, body bytes) of one plain HTTP request."""
        headers = dict(headers or {})
        if token and url.startswith(f"http://{self.admin}/"):
            headers["Authorization"] = f"Bearer {self.token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with OPENER.open(req, timeout=HTTP_TIMEOUT_S) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def admin_json(self, method, path, body=None):
        status, _, data = self.request(method, f"http://{self.admin}{path}", body)
        assert 200 <= status < 300, f"{method} {path} should succeed, got {status}: {data[:300]!r}"
        return json.loads(data)

    def gateway_call(self, method, path, body=None):
        return self.request(method, f"http://{self.gateway}{path}", body)

    def version(self, service):
        return self.admin_json("GET", f"/services/{service}")["version"]


def with_custom_section(data, label):
    """`data` with a custom section appended: same behaviour, new version."""
    def leb(n):
        out = bytearray()
        while True:
            byte = n & 0x7F
            n >>= 7
            if n == 0:
                out.append(byte)
                return bytes(out)
            out.append(byte | 0x80)
    name = b"bazaar-test"
    payload = leb(len(name)) + name + label.encode()
    return data + b"\x00" + leb(len(payload)) + payload


def wait_until(what, check, timeout_s=15.0):
    """Polls `check` (bounded) until it returns a true value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def prepare(host, testbed_bytes):
    """A second version of alpha (with markup in its source) and a dead letter for beta."""
    v1 = host.version("alpha")
    source = '<img src=x onerror="window.__injected=1"><b id="injected">v2</b>'
    status, _, body = host.request(
        "PUT", f"http://{host.admin}/services/alpha",
        with_custom_section(testbed_bytes, "dashboard v2"),
        headers={"x-bazaar-source": source})
    assert status == 200, f"deploying alpha v2 should succeed, got {status}: {body[:300]!r}"
    v2 = json.loads(body)["version"]
    assert v2 != v1, "the second version should have a new hash"
    assert host.gateway_call("PUT", "/beta/kv/control/fail", b"1")[0] == 204
    status, _, body = host.gateway_call("POST", "/alpha/publish/news", b"hello dashboard")
    assert status == 200, f"alpha should publish, got {status}: {body!r}"
    event_id = json.loads(body)["id"]
    wait_until("beta's dead letter", lambda: any(
        s["subscriber"] == "beta" and s["dead_letters"] == 1
        for s in host.admin_json("GET", "/events")))
    assert host.gateway_call("DELETE", "/beta/kv/control/fail")[0] == 204
    step(f"alpha has two versions ({short(v1)}, {short(v2)}); beta has a dead letter")
    return v1, v2, source, event_id


def check_static_routes(host):
    """The page is served without the token; the data is not."""
    base = f"http://{host.admin}"
    for path, kind in (("/dashboard", "text/html"), ("/dashboard/app.js", "text/javascript"),
                       ("/dashboard/style.css", "text/css")):
        status, headers, _ = host.request("GET", base + path, token=False)
        assert status == 200, f"GET {path} without a token should be 200, got {status}"
        assert headers["Content-Type"].startswith(kind), f"{path}: {headers['Content-Type']}"
        assert "script-src 'self'" in headers.get("Content-Security-Policy", ""), path
    for path in ("/services", "/stats", "/events"):
        status, _, _ = host.request("GET", base + path, token=False)
        assert status == 401, f"GET {path} without a token should be 401, got {status}"
    step("the page is public, the API behind it needs the token")


def use_dashboard(host, page, v1, v2, source, event_id):
    url = f"http://{host.admin}/dashboard"
    page.goto(url)
    token_input = page.get_by_test_id("token-input")
    expect(token_input).to_be_visible()
    token_input.fill("x" * 40)
    page.get_by_test_id("token-submit").click()
    expect(page.get_by_test_id("token-error")).to_contain_text("refused")
    expect(token_input).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0, "a refused token should be forgotten"
    step("a wrong token is refused and the page asks again")

    token_input.fill(host.token)
    page.get_by_test_id("token-submit").click()
    alpha = page.locator('#services tr[data-service="alpha"]')
    beta = page.locator('#services tr[data-service="beta"]')
    expect(alpha.get_by_test_id("state")).to_have_text("running")
    expect(beta.get_by_test_id("state")).to_have_text("running")
    expect(alpha.get_by_test_id("version")).to_have_text(short(v2))
    expect(alpha.get_by_test_id("routes")).to_contain_text("/alpha/{*rest}")
    expect(page.get_by_test_id("connection")).to_contain_text("live")
    step("signed in: alpha and beta listed, running, alpha on v2")

    counter = alpha.get_by_test_id("requests-total")
    expect(counter).to_have_text(re.compile(r"^\d+$"))
    before = int(counter.inner_text())
    burst = 7
    for _ in range(burst):
        status, _, _ = host.gateway_call("GET", "/alpha/config/greeting")
        assert status == 200, f"GET /alpha/config/greeting should be 200, got {status}"
    expect(counter).to_have_text(str(before + burst), timeout=STEP_MS)
    expect(alpha.get_by_test_id("requests-per-second")).not_to_have_text("0.0/s")
    expect(alpha.get_by_test_id("p95-ms")).to_have_text(re.compile(r"ms$"))
    step(f"alpha's request counter went from {before} to {before + burst} under traffic")

    history = page.locator('[data-history="alpha"]')
    expect(history.locator(f'li[data-version="{v2}"] .source')).to_have_text(source)
    assert page.locator("#injected").count() == 0, "markup from the API should stay text"
    assert page.evaluate("window.__injected") is None, "markup from the API should not run"
    step("a deploy source holding markup is shown as text")

    subscription = page.locator('#subscriptions tr[data-subscriber="beta"][data-topic="news"]')
    expect(subscription.get_by_test_id("dead-letters")).to_have_text("1")
    expect(page.locator('#dead-letters tr[data-subscriber="beta"]')).to_contain_text("told to fail")
    subscription.get_by_test_id("replay").click()
    expect(subscription.get_by_test_id("dead-letters")).to_have_text("0", timeout=STEP_MS)
    expect(page.get_by_test_id("action-status")).to_contain_text("1 dead letter(s)")
    wait_until("beta to record the replayed event", lambda: any(
        e["id"] == event_id for e in json.loads(host.gateway_call("GET", "/beta/events")[2])))
    events = host.admin_json("GET", "/events")
    assert [s["dead_letters"] for s in events if s["subscriber"] == "beta"] == [0], events
    step("replay delivered beta's dead letter (checked on the host)")

    page.once("dialog", lambda dialog: dialog.dismiss())
    alpha.get_by_test_id("rollback").click()
    page.wait_for_timeout(500)
    assert host.version("alpha") == v2, "a dismissed confirmation should not roll back"
    expect(alpha.get_by_test_id("version")).to_have_text(short(v2))

    page.once("dialog", lambda dialog: dialog.accept())
    alpha.get_by_test_id("rollback").click()
    expect(alpha.get_by_test_id("version")).to_have_text(short(v1), timeout=STEP_MS)
    assert host.version("alpha") == v1, "the admin API should report v1 after the rollback"
    _, headers, _ = host.gateway_call("GET", "/alpha/config/greeting")
    assert headers["x-bazaar-version"] == v1, f"alpha should answer as v1: {headers}"
    expect(history.locator(f'li[data-version="{v1}"]')).to_have_attribute("data-current", "true")
    step("rollback: alpha serves v1 (dashboard, admin API and gateway agree)")

    page.once("dialog", lambda dialog: dialog.accept())
    history.locator(f'li[data-version="{v2}"]').get_by_test_id("rollback-to").click()
    expect(alpha.get_by_test_id("version")).to_have_text(short(v2), timeout=STEP_MS)
    assert host.version("alpha") == v2, "the admin API should report v2 after rolling forward"
    step("rollback to a chosen version: alpha serves v2 again")

    page.reload()
    expect(alpha.get_by_test_id("version")).to_have_text(short(v2))
    assert page.evaluate("localStorage.length") == 0, "nothing should be kept in localStorage"
    assert page.evaluate("document.cookie") == "", "nothing should be kept in cookies"
    other = page.context.new_page()
    other.goto(url)
    expect(other.get_by_test_id("token-input")).to_be_visible()
    other.close()
    step("the token lasts for the tab only: a reload keeps it, a new tab asks")
    if os.environ.get("BAZAAR_SCREENSHOT"):
        page.screenshot(path=os.environ["BAZAAR_SCREENSHOT"], full_page=True)


def main():
    binary, components = sys.argv[1], sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    host = Host(binary, components)
    failed = True
    try:
        health = host.admin_json("GET", "/healthz")
        assert health["status"] == "ok", f"every service should load: {health}"
        step(f"host up: gateway {host.gateway}, admin {host.admin}")
        check_static_routes(host)
        v1, v2, source, event_id = prepare(host, (Path(components) / "testbed.wasm").read_bytes())
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_context().new_page()
                page.set_default_timeout(STEP_MS)
                expect.set_options(timeout=STEP_MS)
                problems = []
                page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
                page.on("console", lambda m: problems.append(f"console: {m.text}")
                        if "Content Security Policy" in m.text else None)
                use_dashboard(host, page, v1, v2, source, event_id)
                assert not problems, f"the page reported problems: {problems}"
            finally:
                browser.close()
        failed = False
    finally:
        if failed:
            print(f"--- host log ({host.log_path}), last lines:", file=sys.stderr)
            host.log.flush()
            text = host.log_path.read_text(errors="replace").splitlines()
            print("\n".join(text[-40:]), file=sys.stderr)
        host.stop(keep_dir=failed and bool(os.environ.get("BAZAAR_KEEP_FAILED")))
    print(f"the dashboard works in Chromium ({time.monotonic() - started:.1f} s)")
    print("dashboard: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
