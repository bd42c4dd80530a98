"""The machine, the table on stdout, and the JSON under bench/results/."""

import json
import os
import platform
import shutil
import subprocess
import tempfile

from cases import median, spread

# How each build the benchmark can measure was made; the host and the
# native ceiling are always built the same way.
PROFILES = {
    "pgo": "the `release` profile and profile-guided optimisation (scripts/build-pgo;"
           " the native ceiling too)",
    "release": "the `release` profile",
    "debug": "the `dev` profile",
}


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "cpu": cpu,
        # The cores this process may run on, which wrk and the servers share.
        "cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "os": platform.platform(terse=True),
        # Where the hosts' data lives: the key-value writes' fsync cost is
        # the filesystem's.
        "tmp_fs": filesystem(tempfile.gettempdir()),
    }


def filesystem(path):
    """The type of the filesystem holding `path` (`stat -f`), or None."""
    try:
        done = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def tool_version(argv):
    """The first line of `argv`'s output, less any copyright notice."""
    if not shutil.which(argv[0]) and not os.path.exists(argv[0]):
        return None
    done = subprocess.run(argv, capture_output=True, text=True)
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].split(" Copyright")[0] if text else None


def ratio(value):
    return "-" if value is None else f"{value:.2f}x"


def percent(share):
    return "-" if share is None else f"{100 * share:.0f}%"


def number(value, digits=1):
    """`value` with `digits` decimals, or `-` when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def load_table(cases):
    width = max([len(f"({c['key']}) {c['label']}") for c in cases] + [len('case')])
    head = (f"{'case':<{width}} {'conns':>5} {'req/s':>9} {'xa':>7} {'xd':>7} "
            f"{'+-':>4} {'p50 ms':>7} {'xa':>7} {'xd':>7} {'p99 ms':>7} {'xa':>7} {'xd':>7} {'errors':>6}"
            f" {'CPU us':>7} {'xa':>7} {'sys us':>7} {'wrk us':>7}")
    lines = [head, "-" * len(head)]
    for c in cases:
        label = f"({c['key']}) {c['label']}"
        if c["status"] != "ok" or not c["runs"]:
            reason = c["reason"] if len(c["reason"]) < 100 else c["reason"][:97] + "..."
            lines.append(f"{label:<{width}} {c['status']}: {reason}")
            continue
        for run in c["runs"]:
            lines.append(
                f"{label:<{width}} {run['connections']:>5} {run['rps']:>9.0f} "
                f"{ratio(run['rps_vs_native']):>7} {ratio(run['rps_vs_wasmtime']):>7} "
                f"{percent(spread(run)):>4} {run['p50_ms']:>7.2f} {ratio(run['p50_ms_vs_native']):>7} "
                f"{ratio(run['p50_ms_vs_wasmtime']):>7} {run['p99_ms']:>7.2f} "
                f"{ratio(run['p99_ms_vs_native']):>7} {ratio(run['p99_ms_vs_wasmtime']):>7} "
                f"{run['errors']:>6} {number(run.get('server_cpu_us')):>7} "
                f"{ratio(run.get('server_cpu_us_vs_native')):>7} "
                f"{number(run.get('server_sys_us')):>7} "
                f"{number(run.get('client_cpu_us')):>7}")
            label = ""
    return "\n".join(lines)


def steal_summary(cases, threshold=None):
    """A line on the CPU time the VM's host took during the load runs
    (each round's run on its own): a long tail or a slow round in a run
    with much of it says more about the machine than about the server.
    Runs set aside for it (see load.LoadRunner) are counted apart."""
    stolen, retaken = [], []
    for c in cases:
        for run in c.get("runs", []):
            for r in run.get("rounds", [run]):
                if r.get("steal_pct") is not None:
                    stolen.append((r["steal_pct"], c["key"], run["connections"]))
                retaken += [t["steal_pct"] for t in r.get("retaken", [])
                            if t.get("steal_pct") is not None]
    if not stolen:
        return None
    most, key, conns = max(stolen)
    line = (f"CPU time stolen by the VM's host (/proc/stat) during the load runs: median"
            f" {median([v for v, _, _ in stolen]):.1f}%, most {most:.1f}% (({key}) at {conns}"
            f" connections), over {len(stolen)} runs")
    if threshold is not None:
        line += (f"; run again when over {threshold:g}%: {len(retaken)} run(s) set aside"
                 + (f" (most {max(retaken):.1f}%)" if retaken else ""))
    return line


def render(result):
    m, r = result["machine"], result["run"]
    out = [
        f"Bazaar benchmark, {r['mode']} run, host built with {PROFILES.get(r['profile'], r['profile'])},"
        f" {r['finished']}",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, kernel {m['kernel']}"
        + (f", {tempfile.gettempdir()} on {m['tmp_fs']}" if m.get("tmp_fs") else ""),
        f"load: {r['load_generator']}, {r['wrk_threads']} thread(s), {r['seconds']} s per run"
        f" after {r['warmup_seconds']} s warm-up, loopback; {r['rounds']} round(s), every"
        " host started afresh in each: each column the median of its rounds (taken on its"
        " own), errors their sum",
        "xa = ratio to (a) native axum, xd = ratio to wasmtime serve with defaults:"
        " (f-wasmtime-fresh) for the Python rows, (d-default) hello for the others"
        " (same connections; for latency below 1x is faster); +- = half the range of"
        " req/s over the rounds, as a share of the median",
        "CPU us = the server's user+system CPU (every thread, from /proc) over the run's"
        " requests, in microseconds per request; sys us = its system (kernel) part:"
        " socket reads and writes, loopback TCP carrying the response to wrk, wake-ups;"
        " wrk us = wrk's user+system CPU the same way",
        "",
        load_table(result["load"]),
        "",
    ]
    for e in result.get("instantiation") or []:
        out.append(
            f"instantiation per request, {e['host']}: {e['ms']:.2f} ms"
            f" (1-connection p50, ({e['fresh_case']}) minus ({e['warm_case']}))")
    stolen = steal_summary(result.get("load") or [], r.get("retake_steal_pct"))
    if stolen:
        out.append(stolen)
    for b in result.get("cpu_budget") or []:
        used = ", ".join(f"({k}) {v:.1f}" for k, v in b["total_used_us"].items())
        idle = ", ".join(f"({k}) {v:.0f}%" for k, v in (b.get("idle_pct") or {}).items())
        out.append(
            f"CPU budget at {b['connections']} connections: {b['share']}x native is"
            f" {b['target_rps']} req/s, possible only if server and wrk together use at most"
            f" {b['total_budget_us']:.1f} us of CPU per request on the {m['cores']} cores;"
            f" used: {used or 'not measured'} (median of the rounds' sums)"
            + (f"; cores idle meanwhile: {idle}" if idle else ""))
    for s in result.get("hot_swap") or []:
        out.append(
            f"hot swap {s['component']} ({s['bytes'] / 1e6:.1f} MB), deploy call to first new"
            f" response, while polled: uncached {s['uncached_ms']:.0f} ms,"
            f" cached {s['cached_ms']:.0f} ms; cached, quiet host {s['cached_quiet_ms']:.0f} ms"
            + (f"; rollback to the kept other version, polled, {s['rollback_ms']:.0f} ms"
               if "rollback_ms" in s else "")
            + f" (cached and rollback: medians of {s.get('rounds', 5)})")
    st = result.get("startup")
    if st:
        for kind in ("cold", "warm"):
            out.append(
                f"demo start-up ({st['services']} services), {kind} code cache:"
                f" listening {st[kind]['listening_ms']:.0f} ms,"
                f" every service answering {st[kind]['ready_ms']:.0f} ms"
                + (f" (median of {st[kind]['runs']} starts)" if st[kind].get("runs", 1) > 1
                   else " (one start)"))
    many = result.get("many_services")
    if many:
        for kind in ("cold", "warm"):
            out.append(
                f"{many['services']} small services, {kind} code cache: every service answering"
                f" {many[kind]['ready_ms']:.0f} ms (probed one by one), idle"
                f" {many[kind]['idle_rss_mib']:.0f} MiB"
                f" ({many[kind]['idle_rss_per_service_mib']:.2f} MiB per service)")
        routed = many["warm"].get("routed_16_connections", {})
        if routed:
            out.append(
                f"{many['services']} small services,"
                f" {many['warm'].get('routed_instances', 'fresh')} hello at 16 connections through one"
                " service's route: " + ", ".join(
                    f"{name} {run['rps']:.0f} req/s (p99 {run['p99_ms']:.2f} ms,"
                    f" {run['errors']} errors)" for name, run in routed.items()))
    mem = result.get("memory")
    if mem:
        out.append(
            f"resident memory (hello host): idle {mem['idle_mib']:.1f} MiB, under 64-connection"
            f" load {mem['under_load_peak_mib']:.1f} MiB peak, per extra service"
            f" {mem['per_extra_service_mib']:.2f} MiB (slope over {mem['extra_services']})")
    for note in result.get("notes", []):
        out.append(f"note: {note}")
    for error in result.get("errors", []):
        out.append(f"BROKEN, not measured: {error}")
    return "\n".join(out)


def write(result, results_dir):
    """latest.json and a timestamped copy; returns the copy's path."""
    os.makedirs(results_dir, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    stamp = result["run"]["finished"].replace(":", "").replace("-", "")
    path = os.path.join(results_dir, f"{stamp}-{result['run']['mode']}.json")
    for target in (path, os.path.join(results_dir, "latest.json")):
        with open(target, "w") as f:
            f.write(text)
    return path
