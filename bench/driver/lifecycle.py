"""What is not a load run: resident memory, hot-swap time, start-up time."""

import hashlib
import http.client
import json
import multiprocessing
import os
import shutil
import statistics
import time
import uuid

from hosts import ADMIN_TOKEN, Bazaar, demo_services
from load import RssSampler, assert_served, wrk
from procs import Client


def with_custom_section(data, label):
    """`data` with a custom section appended: same behaviour, new content
    hash, so the host has never compiled it (as tests/e2e/support.rs does)."""
    def leb(n):
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    name = b"bazaar-bench"
    payload = leb(len(name)) + name + label.encode()
    return data + b"\x00" + leb(len(payload)) + payload


def memory(ctx):
    """VmRSS of a host serving hello: idle, the peak under 64-connection
    load, and the slope per service added live with `bazaar deploy`."""
    ctx.log("  memory")
    services = {"hello": {"component": ctx.hello, "routes": ["/hello", "/hello/{*rest}"]}}
    host = Bazaar(ctx.bazaar, ctx.workdir, "memory", services, ctx.cache_dir)
    try:
        host.wait_services()
        time.sleep(1)
        idle = host.server.rss_kib()
        sampler = RssSampler(host.server)
        run = wrk(host.url + "/hello", 64, ctx.runner.seconds, ctx.runner.threads)
        loaded = sampler.stop()
        assert_served(run, "the memory load run")
        time.sleep(1)
        after = host.server.rss_kib()
        points = [(0, after)]
        client = Client(host.url)
        for i in range(1, ctx.extra_services + 1):
            name = f"extra{i}"
            host.deploy_cli(name, ctx.hello, f"/{name}/{{*rest}}")
            status, head, _ = client.request("GET", f"/{name}/x")
            assert head.get("x-bazaar-service") == name, f"{name} answered {status}"
            if i % max(1, ctx.extra_services // 5) == 0 or i == ctx.extra_services:
                time.sleep(0.5)
                points.append((i, host.server.rss_kib()))
        client.close()
    finally:
        host.stop()
    # Least squares over (services added, RSS): the cost of one more service.
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    mib = lambda kib: round(kib / 1024, 2)  # noqa: E731
    result = {
        "idle_mib": mib(idle), "under_load_peak_mib": mib(loaded),
        "after_load_mib": mib(after), "per_extra_service_mib": round(slope / 1024, 3),
        "extra_services": ctx.extra_services,
        "points": [{"extra_services": x, "rss_mib": mib(y)} for x, y in points],
    }
    ctx.log(f"    idle {result['idle_mib']:.1f} MiB, under load {result['under_load_peak_mib']:.1f}"
            f" MiB, {result['per_extra_service_mib']:.2f} MiB per extra service")
    return result


def _poll_versions(base, path, stop, seen):
    """The poller's process: GETs `path` in a tight keep-alive loop and
    sends (x-bazaar-version, time.monotonic()) the first time each
    version answers, until `stop` is set."""
    client, known = Client(base), set()
    parent = os.getppid()
    try:
        # Ends with the driver too: a poller left behind would spin a core.
        while not stop.is_set() and os.getppid() == parent:
            try:
                status, head, _ = client.request("GET", path)
            except (OSError, http.client.HTTPException):
                time.sleep(0.001)
                continue
            at, version = time.monotonic(), head.get("x-bazaar-version", "")
            # The first *answer* from a version: a 200, not an error it gave.
            if status == 200 and version not in known:
                known.add(version)
                seen.send((version, at))
    finally:
        client.close()


class VersionPoller:
    """GETs a path in a tight keep-alive loop, noting when each
    x-bazaar-version was first seen. It runs in a process of its own: as a
    thread it shared the driver's GIL with the upload it times, whose
    send loop then waited up to the 5 ms switch interval between writes
    (one swap in five came out 30-50 ms slower). time.monotonic() is the
    same clock in both processes."""

    def __init__(self, base, path):
        context = multiprocessing.get_context("spawn")
        self.first_seen, self.stop_flag = {}, context.Event()
        self.inbox, outbox = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_poll_versions, args=(base, path, self.stop_flag, outbox), daemon=True)
        self.process.start()
        outbox.close()

    def _receive(self):
        while self.inbox.poll(0.001):
            header, at = self.inbox.recv()
            self.first_seen.setdefault(header, at)

    def wait_running(self, timeout=60):
        """Returns once the poller has had its first answer."""
        deadline = time.monotonic() + timeout
        while not self.first_seen:
            if time.monotonic() > deadline or not self.process.is_alive():
                raise TimeoutError("the version poller never got an answer")
            self._receive()

    def seen(self, version, timeout=120):
        """When a response first carried `version` (the header may be a prefix)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._receive()
            for header, at in self.first_seen.items():
                if header and version.startswith(header):
                    return at
        raise TimeoutError(f"no response from version {version[:12]} in {timeout}s")

    def stop(self):
        self.stop_flag.set()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
        self.inbox.close()


def swap_once(host, service, data, path):
    """Deploys `data` while polling; (ms to the first new response, ms of the call)."""
    poller = VersionPoller(host.url, path)
    try:
        poller.wait_running()  # in its loop before the clock starts
        admin = Client(host.admin_url, timeout=600)
        start = time.monotonic()
        status, _, body = admin.request("PUT", f"/services/{service}", body=data,
                                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        returned = time.monotonic()
        admin.close()
        assert status == 200, f"deploy answered {status}: {body[:300]!r}"
        version = json.loads(body)["version"]
        first = poller.seen(version)
    finally:
        poller.stop()
    return (first - start) * 1000, (returned - start) * 1000


def rollback_once(host, service, version, path):
    """Rolls `service` back (or forward) to kept `version` while polling;
    (ms to the first response from it, ms of the call)."""
    poller = VersionPoller(host.url, path)
    try:
        poller.wait_running()
        admin = Client(host.admin_url, timeout=600)
        start = time.monotonic()
        status, _, body = admin.request(
            "POST", f"/services/{service}/rollback", body=json.dumps({"to": version}).encode(),
            headers={"authorization": f"Bearer {ADMIN_TOKEN}",
                     "content-type": "application/json"})
        returned = time.monotonic()
        admin.close()
        assert status == 200, f"rollback answered {status}: {body[:300]!r}"
        first = poller.seen(version)
    finally:
        poller.stop()
    return (first - start) * 1000, (returned - start) * 1000


SWAP_ROUNDS = 5


def swap_quiet(host, service, data, path):
    """Deploys `data` on a host with nothing else running, then asks once:
    ms from the deploy call to that first response, which must come from
    the new version (a deploy answers once its version is live)."""
    admin, client = Client(host.admin_url, timeout=600), Client(host.url)
    try:
        start = time.monotonic()
        status, _, body = admin.request("PUT", f"/services/{service}", body=data,
                                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert status == 200, f"deploy answered {status}: {body[:300]!r}"
        answered, head, _ = client.request("GET", path)
        first = time.monotonic()
    finally:
        admin.close()
        client.close()
    assert answered == 200, f"the first request after the deploy answered {answered}"
    version, served = json.loads(body)["version"], head.get("x-bazaar-version", "")
    assert served and version.startswith(served), \
        f"the first request after the deploy got version {served!r}, not {version[:12]}"
    return (first - start) * 1000


def hot_swap(ctx):
    """Deploy call to first response from the new version, for each component:
    uncached (a content hash never compiled) then cached (the original
    again, compiled at start-up and found in the code cache, then each in
    turn), each while a poller asks the service back to back (one
    connection, fresh instances: for the Python component, about one core
    busy); then cached again on a quiet host, the call followed by one
    request; then rollbacks between the two kept versions, polled."""
    # The 20 MB Python component compiles for seconds uncached: not in smoke runs.
    components = [("hello", ctx.hello)]
    if ctx.py and not ctx.smoke:
        components.append(("py-hello", ctx.py))
    services = {f"swap-{n}": {"component": p, "routes": [f"/swap-{n}/{{*rest}}"]}
                for n, p in components}
    host = Bazaar(ctx.bazaar, ctx.workdir, "swap", services, ctx.cache_dir)
    results = []
    try:
        host.wait_services()
        for name, path in components:
            with open(path, "rb") as f:
                original = f.read()
            fresh = with_custom_section(original, f"bench-{uuid.uuid4().hex}")
            entry = {"component": name, "bytes": len(original), "rounds": SWAP_ROUNDS}
            first, call = swap_once(host, f"swap-{name}", fresh, f"/swap-{name}/x")
            entry["uncached_ms"], entry["uncached_call_ms"] = round(first, 1), round(call, 1)
            # Both are in the code cache now: cached swaps, back and forth,
            # the median of SWAP_ROUNDS while polled and of as many on a
            # quiet host.
            turns = [original if n % 2 == 0 else fresh for n in range(SWAP_ROUNDS)]
            polled = [swap_once(host, f"swap-{name}", data, f"/swap-{name}/x")
                      for data in turns]
            # The last polled turn left `original` current: start from `fresh`.
            quiet = [swap_quiet(host, f"swap-{name}", fresh if data is original else original,
                                f"/swap-{name}/x")
                     for data in turns]
            # The quiet turns left `fresh` current; roll between the two
            # kept versions, while polled.
            versions = {id(d): hashlib.sha256(d).hexdigest() for d in (original, fresh)}
            rolled = [rollback_once(host, f"swap-{name}", versions[id(data)], f"/swap-{name}/x")
                      for data in turns]
            entry["rollback_ms"] = round(statistics.median(f for f, _ in rolled), 1)
            entry["cached_ms"] = round(statistics.median(f for f, _ in polled), 1)
            entry["cached_call_ms"] = round(statistics.median(c for _, c in polled), 1)
            entry["cached_quiet_ms"] = round(statistics.median(quiet), 1)
            ctx.log(f"  hot swap {name} ({len(original) / 1e6:.1f} MB): uncached "
                    f"{entry['uncached_ms']:.0f} ms; cached, median of {SWAP_ROUNDS}:"
                    f" {entry['cached_ms']:.0f} ms polled"
                    f" ({', '.join(f'{f:.0f}' for f, _ in polled)}),"
                    f" {entry['cached_quiet_ms']:.0f} ms quiet"
                    f" ({', '.join(f'{q:.0f}' for q in quiet)});"
                    f" rollback to a kept version {entry['rollback_ms']:.0f} ms polled"
                    f" ({', '.join(f'{f:.0f}' for f, _ in rolled)})")
            results.append(entry)
    finally:
        host.stop()
    return results


def many_services(ctx):
    """`many_services` hello services on one host (each its own route):
    start-up with a warm code cache to every service answering (probed one
    after another, so probing is included), and resident memory per
    service once idle. A cold start first fills the cache. Then, on the
    warm host, requests at 16 connections to the first and the last
    service by name: routing should not depend on how many routes come
    before a path's."""
    n = ctx.many_services
    services = {f"s{i}": {"component": ctx.hello, "routes": [f"/s{i}/{{*rest}}"]}
                for i in range(n)}
    # The two loaded keep warm instances when the run has them: the
    # router's share of a request is then larger, and easier to see.
    # By number, not by text: "s9" sorts after "s19".
    probed = ("s0", f"s{n - 1}")
    for name in probed:
        services[name].update(ctx.warm_option or {})
    cache = os.path.join(ctx.workdir, "many-cache")
    result = {"services": n}
    for kind in ("cold", "warm"):
        host = Bazaar(ctx.bazaar, ctx.workdir, f"many-{kind}", services, cache)
        routed = {}
        try:
            ready = host.wait_services()
            time.sleep(1)
            rss = host.server.rss_kib()
            if kind == "warm":
                for name in probed:
                    run = wrk(f"{host.url}/{name}/x", 16, ctx.runner.seconds, ctx.runner.threads)
                    assert_served(run, f"the load on {name} of {n} services")
                    routed[name] = {"rps": run["rps"], "p99_ms": run["p99_ms"],
                                    "errors": run["errors"]}
        finally:
            host.stop()
        shutil.rmtree(os.path.join(ctx.workdir, f"many-{kind}-data"), ignore_errors=True)
        result[kind] = {"ready_ms": round(ready * 1000, 1), "idle_rss_mib": round(rss / 1024, 1),
                        "idle_rss_per_service_mib": round(rss / 1024 / n, 3)}
        if routed:
            result[kind]["routed_16_connections"] = routed
            result[kind]["routed_instances"] = "warm" if ctx.warm_option else "fresh"
    ctx.log(f"  {n} services: warm start-up {result['warm']['ready_ms']:.0f} ms to all answering,"
            f" idle {result['warm']['idle_rss_mib']:.0f} MiB"
            f" ({result['warm']['idle_rss_per_service_mib']:.2f} MiB per service)")
    return result


def startup(ctx):
    """The demo's six services: spawn to listener up and to every service
    answering; cold (empty code cache) then warm (cache kept), each with a
    fresh data directory so only the code cache differs."""
    services = demo_services(ctx.repo)
    cache = os.path.join(ctx.workdir, "demo-cache")
    runs = {"cold": [], "warm": []}
    for i, kind in enumerate(["cold"] + ["warm"] * ctx.warm_starts):
        host = Bazaar(ctx.bazaar, ctx.workdir, f"demo-{i}", services, cache)
        try:
            ready = host.wait_services()
            runs[kind].append({"listening_ms": round(host.listening_s * 1000, 1),
                               "ready_ms": round(ready * 1000, 1)})
        finally:
            host.stop()
        shutil.rmtree(os.path.join(ctx.workdir, f"demo-{i}-data"), ignore_errors=True)
    result = {"services": len(services)}
    for kind, values in runs.items():
        result[kind] = {
            "listening_ms": statistics.median(r["listening_ms"] for r in values),
            "ready_ms": statistics.median(r["ready_ms"] for r in values),
            "runs": len(values),
        }
        ctx.log(f"  start-up {kind}: listening {result[kind]['listening_ms']:.0f} ms,"
                f" all answering {result[kind]['ready_ms']:.0f} ms (median of {len(values)})")
    return result
