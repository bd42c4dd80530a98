"""Load runs with wrk: bounded in time and connections, figures read from
the JSON line `report.lua` prints."""

import json
import os
import resource
import subprocess
import threading
import time

from procs import StartError

REPORT_LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report.lua")


class LoadError(Exception):
    """wrk failed or printed no figures."""


# What wrk counts as errors (report.lua prints each): non-2xx answers are
# `status_errors`; `timeouts` are requests unanswered after `--timeout`.
ERROR_KINDS = ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")


def wrk(url, connections, seconds, threads, method=None, body=None):
    """One wrk run; the figures as a dict (latencies in ms)."""
    env = dict(os.environ)
    if method:
        env["BENCH_METHOD"] = method
    if body is not None:
        env["BENCH_BODY"] = body
    argv = [
        "wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s",
        "--timeout", "5s", "-s", REPORT_LUA, url,
    ]
    # wrk's own CPU: the children reaped during the run are wrk alone (the
    # servers are reaped only when stopped, never during a load run).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=seconds + 60
        )
    except subprocess.TimeoutExpired as e:
        raise LoadError(f"wrk did not finish: {e}") from e
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            raw = json.loads(line[len("BENCH-RESULT "):])
            kinds = {k: raw[k] for k in ERROR_KINDS if raw[k]}
            return {
                "connections": connections,
                "requests": raw["requests"],
                "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
                "p50_ms": raw["p50_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "max_ms": raw["max_us"] / 1000,
                "errors": sum(kinds.values()),
                # wrk's counts by kind, so that an error can be told apart
                # afterwards (a reset connection, a request it gave up on).
                "error_kinds": kinds,
                "non_2xx": raw["status_errors"],
                "client_cpu_us": per_request_us(client_cpu, raw["requests"]),
            }
    raise LoadError(f"wrk printed no figures (exit {done.returncode}): {done.stderr.strip()}")


def error_kinds(runs):
    """wrk's error counts by kind, added up over `runs`."""
    total = {}
    for run in runs:
        for kind, count in run.get("error_kinds", {}).items():
            total[kind] = total.get(kind, 0) + count
    return total


def machine_ticks():
    """(steal, idle, total) clock ticks of every core so far, from
    /proc/stat's `cpu` line: steal is time a virtual machine's cores were
    runnable but its host ran something else; idle counts iowait too."""
    with open("/proc/stat") as f:
        # user nice system idle iowait irq softirq steal; guest and
        # guest_nice after them are already counted in user and nice.
        fields = [int(v) for v in f.readline().split()[1:9]] + [0] * 8
    return fields[7], fields[3] + fields[4], sum(fields[:8])


def share_percent(before, after, which):
    """The share of the machine's CPU time between two `machine_ticks()`
    readings spent as `which` (0 stolen, 1 idle), in percent; None if no
    time passed."""
    total = after[2] - before[2]
    return round(100 * (after[which] - before[which]) / total, 1) if total > 0 else None


def assert_served(run, what):
    """Fails unless wrk's `run` had answers and no error or non-2xx one:
    figures taken while a host failed would describe the failure."""
    assert run["requests"] and not run["errors"] and not run["non_2xx"], \
        f"{what} was not served: {run}"


def per_request_us(cpu_seconds, requests):
    """CPU seconds spread over `requests`, in microseconds; None for none."""
    return round(cpu_seconds * 1e6 / requests, 2) if requests else None


class RssSampler:
    """Samples a process's VmRSS every 100 ms in a thread; keeps the max."""

    def __init__(self, server):
        self.server, self.max_kib = server, 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.max_kib = max(self.max_kib, self.server.rss_kib())
            except OSError:
                return
            time.sleep(0.1)

    def stop(self):
        self.stop_flag.set()
        self.thread.join()
        return self.max_kib


class LoadRunner:
    """Runs each case at every connection count, after a warm-up run.

    A run during which the VM's host took more than `retake_steal` percent
    of the machine's CPU (`/proc/stat`'s steal) is run again, at most
    `retakes` times, and the least disturbed attempt is kept: on a shared
    VM the host takes the cores ~100 ms at a time, which stalls every
    request in flight whatever serves it, so such a run measures the
    neighbours rather than the server. What was set aside stays in the
    kept run's `retaken` list, and its errors and non-2xx answers are
    added to the kept run's, so a retake never hides a failure."""

    def __init__(self, connections, seconds, warmup, threads, retake_steal=None, retakes=2):
        self.connections, self.seconds = connections, seconds
        self.warmup, self.threads = warmup, threads
        self.retake_steal, self.retakes = retake_steal, retakes

    def disturbed(self, run):
        """Whether `run` lost more of the machine to the VM's host than
        `retake_steal` allows."""
        return (self.retake_steal is not None and run["steal_pct"] is not None
                and run["steal_pct"] > self.retake_steal)

    def measure(self, server, url, method=None, body=None, log=print):
        """Every connection count against `url`, served by `server` (a
        procs.Server), whose CPU per request each run records."""
        runs = []
        for conns in self.connections:
            if self.warmup:
                # Discarded: lets pools, caches and the JIT-free paths settle.
                wrk(url, conns, self.warmup, self.threads, method, body)
            attempts = [self.run_once(server, url, conns, method, body, log)]
            while self.disturbed(attempts[-1]) and len(attempts) <= self.retakes:
                log(f"    {conns:>3} conns: run again, {attempts[-1]['steal_pct']}% of the"
                    f" CPU stolen (more than {self.retake_steal}%)")
                attempts.append(self.run_once(server, url, conns, method, body, log))
            kept = min(attempts, key=lambda r: r["steal_pct"] or 0.0)
            set_aside = [r for r in attempts if r is not kept]
            if set_aside:
                kept["retaken"] = [
                    {k: r[k] for k in ("steal_pct", "rps", "p99_ms", "max_ms", "errors",
                                       "error_kinds", "non_2xx")}
                    for r in set_aside]
                kept["errors"] += sum(r["errors"] for r in set_aside)
                kept["non_2xx"] += sum(r["non_2xx"] for r in set_aside)
                kept["error_kinds"] = error_kinds([kept, *set_aside])
            runs.append(kept)
        return runs

    def run_once(self, server, url, conns, method, body, log):
        """One measured run at `conns` connections, with the server's CPU
        and the CPU stolen from the machine while it ran."""
        try:
            user, system = server.cpu_seconds()
            ticks = machine_ticks()
            run = wrk(url, conns, self.seconds, self.threads, method, body)
            ticks_after = machine_ticks()
            run["steal_pct"] = share_percent(ticks, ticks_after, 0)
            # Cores idle while the load ran: with wrk and the server on the
            # same cores, what neither could use (each waiting for the other).
            run["idle_pct"] = share_percent(ticks, ticks_after, 1)
            user_after, system_after = server.cpu_seconds()
            run["server_cpu_us"] = per_request_us(
                user_after + system_after - user - system, run["requests"])
            # The kernel's part: reading requests and writing responses,
            # loopback TCP delivering them to wrk, waking threads.
            run["server_sys_us"] = per_request_us(system_after - system, run["requests"])
            # A server that died during the run still has its /proc entry
            # until it is reaped: its figures would be wrk's errors alone.
            server.check_alive()
        except (OSError, StartError) as e:
            raise LoadError(f"{server.name} is gone: {e}") from e
        if not run["requests"]:
            raise LoadError(f"no request to {url} was answered at {conns} connections"
                            f" ({run['errors']} errors)")
        log(f"    {conns:>3} conns: {run['rps']:>9.0f} req/s  p50 {run['p50_ms']:.2f} ms"
            f"  p99 {run['p99_ms']:.2f} ms  errors {run['errors']}"
            f"{' ' + str(run['error_kinds']) if run['errors'] else ''}"
            f"  CPU per request {run['server_cpu_us'] or '-'} us"
            f" ({run['server_sys_us'] or '-'} in the kernel)"
            f" (wrk {run['client_cpu_us'] or '-'} us)  steal {run['steal_pct']}%"
            f"  idle {run['idle_pct']}%")
        return run
