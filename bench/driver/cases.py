"""The load cases (a)-(f): which server, which component, which request."""

import copy
import urllib.parse

from hosts import Bazaar, Native, WasmtimeServe
from load import LoadError, error_kinds
from procs import Client, StartError

# `wasmtime serve` flag sets, as issue 12 names them. Every run adds
# `-S cli=y`: the components import wasi:cli (environment, stdio), which
# `serve` links only when asked, while Bazaar always provides it.
TUNED = ["-O", "pooling-allocator=y", "-O", "pooling-pagemap-scan=y",
         "-O", "pooling-memory-keep-resident=1048576"]
REUSE = ["--max-instance-reuse-count", "1000"]

KV_PATH = "/tb/kv/bench/key-1"
KV_VALUE = "x" * 64


def case(key, label, status="ok", reason=None, runs=None):
    return {"key": key, "label": label, "status": status, "reason": reason, "runs": runs or []}


def gateway_services(ctx, extra):
    """hello, the testbed (key-value) and py-hello when built; `extra` (a
    dict, e.g. the warm-instance option) is added to each."""
    services = {
        "hello": {"component": ctx.hello, "routes": ["/hello", "/hello/{*rest}"], **extra},
        "tb": {"component": ctx.testbed, "routes": ["/tb/{*rest}"], **extra},
    }
    if ctx.py:
        services["py"] = {"component": ctx.py, "routes": ["/py", "/py/{*rest}"], **extra}
    return services


def prime_kv(host, path=KV_PATH):
    """Writes the key the key-value read cases read (at `path`)."""
    status, _, _ = Client(host.url).request("PUT", path, body=KV_VALUE)
    assert status == 204, f"priming the key-value route {path} answered {status}"


def measured(ctx, key, label, server, url, method=None, body=None):
    """One case against `url`, served by `server` (a procs.Server), once
    one request to it has answered 2xx (wrk counts only statuses from 400
    up as errors: a redirect would pass for an answer)."""
    ctx.log(f"  ({key}) {label}")
    parts = urllib.parse.urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    client = Client(base)
    try:
        status, _, answer = client.request(method or "GET", url[len(base):], body=body)
    except Exception as e:  # noqa: BLE001 - any failure fails the case, not the run
        return case(key, label, "failed", f"{url} did not answer: {e}")
    finally:
        client.close()
    if not 200 <= status < 300:
        return case(key, label, "failed", f"{url} answered {status}: {answer[:200]!r}")
    try:
        return case(key, label, runs=ctx.runner.measure(server, url, method, body, ctx.log))
    except LoadError as e:
        return case(key, label, "failed", str(e))


def native_cases(ctx):
    server = Native(ctx.native, ctx.workdir)
    try:
        return [measured(ctx, "a", "native axum (ceiling)", server.server, server.url + "/hello")]
    finally:
        server.stop()


def bazaar_fresh_cases(ctx):
    host = Bazaar(ctx.bazaar, ctx.workdir, "gateway", gateway_services(ctx, {}), ctx.cache_dir)
    try:
        host.wait_services()
        prime_kv(host)
        results = [
            measured(ctx, "b", "Bazaar hello, fresh instances", host.server, host.url + "/hello"),
            measured(ctx, "e-read", "Bazaar key-value read", host.server, host.url + KV_PATH),
            measured(ctx, "e-write", "Bazaar key-value write", host.server,
                     host.url + KV_PATH,
                     "PUT", KV_VALUE),
        ]
        if ctx.py:
            results.append(measured(ctx, "f-bazaar-fresh", "Bazaar Python, fresh instances",
                                    host.server, host.url + "/py"))
        return results
    finally:
        host.stop()


def bazaar_warm_cases(ctx):
    """(c), key-value and Python warm: the option issue 12 point 2 adds. A
    host that refuses it (an unknown field fails the start) marks them not
    available."""
    labels = [
        ("c", "Bazaar hello, warm instances", "/hello", None),
        ("e-read-warm", "Bazaar key-value read, warm instances", KV_PATH, None),
        ("e-write-warm", "Bazaar key-value write, warm instances", KV_PATH, "PUT"),
    ]
    if ctx.py:
        labels.append(("f-bazaar-warm", "Bazaar Python, warm instances", "/py", None))
    if ctx.warm_option is None:
        return [case(k, label, "skipped", "--no-warm given") for k, label, _, _ in labels]
    services = gateway_services(ctx, copy.deepcopy(ctx.warm_option))
    try:
        host = Bazaar(ctx.bazaar, ctx.workdir, "warm", services, ctx.cache_dir)
    except StartError as e:
        # Only a host that does not know the option lacks the feature; one
        # that crashed or hung with it is broken, and the run fails.
        refused = "unknown field" in str(e)
        status = "not available" if refused else "failed"
        reason = (f"the host refused {ctx.warm_option_text!r}: {str(e).splitlines()[-1]}"
                  if refused else f"the host did not start with {ctx.warm_option_text!r}: {e}")
        ctx.log(f"  (c) {status}: {reason}")
        return [case(k, label, status, reason) for k, label, _, _ in labels]
    try:
        host.wait_services()
        prime_kv(host)
        return [measured(ctx, k, label, host.server, host.url + path, method,
                         KV_VALUE if method else None)
                for k, label, path, method in labels]
    finally:
        host.stop()


def wasmtime_cases(ctx):
    plan = [
        ("d-default", "wasmtime serve hello, defaults", ctx.hello, []),
        ("d-tuned", "wasmtime serve hello, tuned", ctx.hello, TUNED),
        ("d-reuse", "wasmtime serve hello, reuse 1000", ctx.hello, REUSE),
    ]
    if ctx.py:
        plan += [
            ("f-wasmtime-fresh", "wasmtime serve Python, defaults", ctx.py, []),
            ("f-wasmtime-reuse", "wasmtime serve Python, reuse 1000", ctx.py, REUSE),
        ]
    if ctx.wasmtime is None:
        return [case(k, label, "skipped", ctx.wasmtime_reason) for k, label, _, _ in plan]
    results = []
    for key, label, component, flags in plan:
        try:
            flags = ["-S", "cli=y", *flags]
            server = WasmtimeServe(ctx.wasmtime, ctx.workdir, key, component, flags)
        except StartError as e:
            results.append(case(key, label, "failed", str(e)))
            continue
        try:
            results.append(measured(ctx, key, label, server.server, server.url + "/hello"))
        finally:
            server.stop()
    return results


def python_missing(ctx):
    if ctx.py:
        return []
    reason = "py-hello.wasm not built (no python3 with pip?)"
    return [case(k, label, "skipped", reason) for k, label in [
        ("f-bazaar-fresh", "Bazaar Python, fresh instances"),
        ("f-bazaar-warm", "Bazaar Python, warm instances"),
        ("f-wasmtime-fresh", "wasmtime serve Python, defaults"),
        ("f-wasmtime-reuse", "wasmtime serve Python, reuse 1000"),
    ]]


ORDER = ["a", "b", "c", "d-default", "d-tuned", "d-reuse", "e-read", "e-write",
         "e-read-warm", "e-write-warm",
         "f-bazaar-fresh", "f-bazaar-warm", "f-wasmtime-fresh", "f-wasmtime-reuse"]


def run_round(ctx):
    """Every case once, each host started afresh, in ORDER."""
    results = []
    for group in (native_cases, bazaar_fresh_cases, bazaar_warm_cases, wasmtime_cases,
                  python_missing):
        results += group(ctx)
    results.sort(key=lambda c: ORDER.index(c["key"]))
    return results


def run_all(ctx, rounds):
    """`rounds` rounds of every case, merged into one (see merge_rounds),
    with the ratios of the merged figures. A round starts every host again,
    so each round is an independent sample of the machine's scheduling
    (which threads share a core), the largest source of run-to-run noise
    seen on 2 cores; the rounds interleave the hosts, so a drift during the
    run touches all of them alike."""
    each = []
    for n in range(rounds):
        if rounds > 1:
            ctx.log(f" round {n + 1} of {rounds}")
        each.append(run_round(ctx))
    results = merge_rounds(each)
    add_ratios(results)
    return results


# Figures a merged run gives as the median of its rounds.
MEDIAN_OF_ROUNDS = ["rps", "p50_ms", "p99_ms", "server_cpu_us", "server_sys_us", "client_cpu_us",
                    "idle_pct"]


def median(values):
    """The median of `values` (the mean of the middle two for an even count)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# Which round's case stands for the merged one when not every round was
# ok: a failure above all, so CI's smoke run fails on it.
STATUS_RANK = {"failed": 0, "not available": 1, "skipped": 2, "ok": 3}


def merge_rounds(rounds):
    """One list of cases from several rounds of the same cases. A case not
    ok in every round is its worst round's case (failed before not
    available before skipped), keeping the non-2xx answers of its ok
    rounds. Otherwise each connection count's run has the median of its
    rounds for each of MEDIAN_OF_ROUNDS (each taken on its own), the sum
    of requests and errors, the largest max, and each round's own run
    under `rounds`."""
    merged = []
    for same in zip(*rounds, strict=True):
        keys = {c["key"] for c in same}
        assert len(keys) == 1, f"rounds ran different cases: {sorted(keys)}"
        worst = min(same, key=lambda c: STATUS_RANK.get(c["status"], 0))
        if worst["status"] != "ok" or len(same) == 1:
            answered_non_2xx = sum(r["non_2xx"] for c in same for r in c["runs"])
            merged.append({**worst, "non_2xx": answered_non_2xx})
            continue
        runs = []
        for by_conns in zip(*(c["runs"] for c in same), strict=True):
            conns = {r["connections"] for r in by_conns}
            assert len(conns) == 1, f"rounds ran different connection counts: {sorted(conns)}"
            run = {"connections": by_conns[0]["connections"]}
            for metric in MEDIAN_OF_ROUNDS:
                values = [r[metric] for r in by_conns if r.get(metric) is not None]
                run[metric] = round(median(values), 3) if values else None
            for total in ("requests", "errors", "non_2xx"):
                run[total] = sum(r[total] for r in by_conns)
            run["error_kinds"] = error_kinds(by_conns)
            run["max_ms"] = max(r["max_ms"] for r in by_conns)
            run["rounds"] = [dict(r) for r in by_conns]
            runs.append(run)
        merged.append({**same[0], "runs": runs})
    return merged


def spread(run):
    """Half the range of a merged run's req/s over its rounds, as a share
    of the median; None for a single round."""
    rounds = [r["rps"] for r in run.get("rounds", []) if r.get("rps") is not None]
    if len(rounds) < 2 or not run.get("rps"):
        return None
    return (max(rounds) - min(rounds)) / 2 / run["rps"]


# (host, fresh case, warm case) for the instantiation estimate.
PAIRS = [
    ("Bazaar hello", "b", "c"),
    ("wasmtime serve hello", "d-default", "d-reuse"),
    ("Bazaar Python", "f-bazaar-fresh", "f-bazaar-warm"),
    ("wasmtime serve Python", "f-wasmtime-fresh", "f-wasmtime-reuse"),
]


def instantiation(results):
    """Per-request instantiation (and teardown) time, estimated as the
    1-connection p50 of fresh instances minus that of warm ones: with one
    request at a time nothing else is on the request's path."""
    one = {c["key"]: r for c in results for r in c["runs"] if r["connections"] == 1}
    estimates = []
    for host, fresh, warm in PAIRS:
        if fresh in one and warm in one:
            estimates.append({"host": host, "fresh_case": fresh, "warm_case": warm,
                              "ms": round(one[fresh]["p50_ms"] - one[warm]["p50_ms"], 3)})
    return estimates


# The `wasmtime serve` case with defaults each case's xd compares with:
# the same component where there is one (the Python rows), else hello
# (the key-value routes need Bazaar's interfaces; wasmtime has none).
WASMTIME_BASE = {"f-bazaar-fresh": "f-wasmtime-fresh", "f-bazaar-warm": "f-wasmtime-fresh",
                 "f-wasmtime-fresh": "f-wasmtime-fresh", "f-wasmtime-reuse": "f-wasmtime-fresh"}


def add_ratios(results):
    """Each figure beside its ratio to (a) native and to `wasmtime serve`
    defaults (WASMTIME_BASE) at the same connection count: throughput as
    x times theirs, latency as x times theirs (below 1 is better for
    latency)."""
    by_key = {c["key"]: c for c in results}

    def runs_of(key):
        return {r["connections"]: r for r in by_key.get(key, {}).get("runs", [])}

    for c in results:
        for name, base_key in (("native", "a"),
                               ("wasmtime", WASMTIME_BASE.get(c["key"], "d-default"))):
            base = runs_of(base_key)
            for run in c["runs"]:
                ref = base.get(run["connections"])
                for metric in ("rps", "p50_ms", "p99_ms", "server_cpu_us"):
                    ok = (ref is not None and (ref.get(metric) or 0) > 0
                          and run.get(metric) is not None)
                    run[f"{metric}_vs_{name}"] = round(run[metric] / ref[metric], 3) if ok else None


# The cases whose CPU the budget lines compare: the ceiling, warm
# instances and `wasmtime serve`'s reuse, the rows of the 0.7x target.
BUDGET_CASES = ["a", "c", "d-reuse"]


def cpu_budget(results, cores, share=0.7):
    """The CPU per request, server and wrk together, at which `share` of
    native's req/s is possible at all, for each connection count of (a)
    but one (a single connection is bound by latency, not CPU): the two
    share the machine's cores, so req/s is at most cores / (server + wrk
    CPU per request). Beside it, what the cases of BUDGET_CASES used."""
    by_key = {c["key"]: c for c in results if c["status"] == "ok"}
    if "a" not in by_key:
        return []
    budgets = []
    for run in by_key["a"]["runs"]:
        if run["connections"] < 2:
            continue
        target = share * run["rps"]
        used, idle = {}, {}
        for key in BUDGET_CASES:
            same = [r for r in by_key.get(key, {}).get("runs", [])
                    if r["connections"] == run["connections"]]
            if not same:
                continue
            # Server and wrk added up round by round, then the median: the
            # medians of each alone may come from different rounds.
            rounds = same[0].get("rounds", [same[0]])
            totals = [r["server_cpu_us"] + r["client_cpu_us"] for r in rounds
                      if r.get("server_cpu_us") is not None
                      and r.get("client_cpu_us") is not None]
            if totals:
                used[key] = round(median(totals), 2)
            if same[0].get("idle_pct") is not None:
                idle[key] = same[0]["idle_pct"]
        budgets.append({
            "connections": run["connections"],
            "share": share,
            "target_rps": round(target),
            "total_budget_us": round(cores * 1e6 / target, 2),
            "total_used_us": used,
            "idle_pct": idle,
        })
    return budgets
