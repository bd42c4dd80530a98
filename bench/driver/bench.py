"""Runs the benchmark: load cases, memory, hot swap, start-up; prints the
table and writes bench/results/. Started by ./scripts/bench, which installs
and builds everything first; see its header for the options."""

import argparse
import datetime
import os
import shutil
import signal
import sys
import tempfile
import time
import tomllib
import types

import cases
import lifecycle
import report
from load import LoadRunner

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECTIONS = ["load", "memory", "swap", "startup"]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="seconds per case, no wasmtime serve")
    # scripts/bench reads these three, builds that profile and names it in
    # --profile; they are listed here for --help.
    p.add_argument("--pgo", action="store_true",
                   help="measure the release build with profile-guided optimisation,"
                   " scripts/build-pgo (a full run's default)")
    p.add_argument("--release", action="store_true",
                   help="measure the plain release host build")
    p.add_argument("--debug", action="store_true",
                   help="measure the debug host build (a smoke run's default)")
    p.add_argument("--profile", choices=["pgo", "release", "debug"], help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=int, help="length of each load run (5; smoke 1)")
    p.add_argument("--warmup", type=int, help="discarded run before each (1; smoke 0)")
    p.add_argument("--rounds", type=int,
                   help="rounds of every load case, figures are their medians (3; smoke 2,"
                   " so the merging of rounds runs in CI too)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    p.add_argument("--retake-steal", type=float, default=2.0, metavar="PCT",
                   help="run a load run again when the VM's host took more than PCT%% of"
                   " the CPU while it ran, keeping the least disturbed attempt (2)")
    p.add_argument("--retakes", type=int, default=2,
                   help="most times one load run is run again for stolen CPU (2; 0: never)")
    p.add_argument("--connections", default="1,16,64",
                   help="connection counts (1,16,64; 1 gives the instantiation estimate)")
    p.add_argument("--extra-services", type=int, help="services added for the memory slope")
    p.add_argument("--warm-option", default="instance_reuse = 1000",
                   help="the TOML line that turns warm instances on for a service")
    p.add_argument("--no-warm", action="store_true", help="skip the warm-instance cases")
    p.add_argument("--many-services", type=int, default=0,
                   help="small services of the many-services start-up (1000; smoke 20)")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help="sections to run: " + ",".join(SECTIONS))
    p.add_argument("--no-install", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def context(args):
    if args.rounds is not None and args.rounds < 1:
        sys.exit("bench: --rounds must be at least 1")
    if args.retakes < 0 or not 0 <= args.retake_steal <= 100:
        sys.exit("bench: --retakes must be at least 0 and --retake-steal within 0-100")
    profile = args.profile or ("debug" if args.smoke else "pgo")
    components = os.path.join(REPO, "components", "target")
    # The host's build directory: cargo's, wherever CARGO_TARGET_DIR puts it.
    target = os.path.join(REPO, os.environ.get("CARGO_TARGET_DIR") or "target")
    # scripts/build-pgo builds into a directory of its own, whatever the
    # environment says.
    binaries = (os.path.join(REPO, "target", "pgo", "release") if profile == "pgo"
                else os.path.join(target, profile))
    wasmtime = os.path.join(REPO, "bench", ".tools", "bin", "wasmtime")
    py = os.path.join(components, "py-hello.wasm")
    ctx = types.SimpleNamespace(
        repo=REPO,
        smoke=args.smoke,
        profile=profile,
        bazaar=os.path.join(binaries, "bazaar"),
        native=os.path.join(binaries, "native-hello"),
        hello=os.path.join(components, "wasm32-wasip2", "release", "hello.wasm"),
        testbed=os.path.join(components, "wasm32-wasip2", "release", "testbed.wasm"),
        py=py if os.path.exists(py) else None,
        wasmtime=None,
        wasmtime_reason=None,
        # Compiled code of the load hosts survives between runs; start-up
        # and uncached hot swap measure compilation on purpose, elsewhere.
        cache_dir=os.path.join(REPO, "bench", ".cache", "code"),
        workdir=None,
        runner=LoadRunner(
            [int(c) for c in args.connections.split(",")],
            args.seconds or (1 if args.smoke else 5),
            args.warmup if args.warmup is not None else (0 if args.smoke else 1),
            args.threads,
            retake_steal=args.retake_steal if args.retakes else None,
            retakes=args.retakes,
        ),
        rounds=args.rounds or (2 if args.smoke else 3),
        extra_services=args.extra_services or (3 if args.smoke else 50),
        warm_starts=1 if args.smoke else 3,
        many_services=args.many_services or (20 if args.smoke else 1000),
        warm_option_text=None if args.no_warm else args.warm_option,
        warm_option=None if args.no_warm else tomllib.loads(args.warm_option),
        log=lambda text: print(text, file=sys.stderr, flush=True),
    )
    if args.smoke:
        ctx.wasmtime_reason = "smoke mode skips wasmtime serve (a 12-minute install)"
    elif not os.path.exists(wasmtime):
        ctx.wasmtime_reason = f"{wasmtime} not installed"
    else:
        ctx.wasmtime = wasmtime
    for path in (ctx.bazaar, ctx.native, ctx.hello, ctx.testbed):
        if not os.path.exists(path):
            sys.exit(f"bench: {path} is missing; run ./scripts/bench, which builds it")
    # Made last: a run refused above leaves nothing behind.
    ctx.workdir = tempfile.mkdtemp(prefix="bazaar-bench-")
    return ctx


def main(argv):
    args = parse_args(argv)
    ctx = context(args)
    only = set(args.only.split(","))
    started = time.monotonic()
    ctx.log(f"bench: work files in {ctx.workdir}")
    result = {
        "run": {
            "mode": "smoke" if args.smoke else "full",
            "profile": ctx.profile,
            "load_generator": report.tool_version(["wrk", "--version"]),
            "wasmtime": report.tool_version([ctx.wasmtime, "--version"]) if ctx.wasmtime else None,
            "wrk_threads": args.threads,
            "retake_steal_pct": ctx.runner.retake_steal,
            "retakes": ctx.runner.retakes,
            "seconds": ctx.runner.seconds,
            "warmup_seconds": ctx.runner.warmup,
            "rounds": ctx.rounds,
            "connections": ctx.runner.connections,
            "warm_option": ctx.warm_option_text,
        },
        "machine": report.machine(),
        "load": [],
        "notes": [],
    }
    # A section that breaks is recorded and the run goes on: the figures
    # of the others are still printed and written, and the run fails.
    sections = [
        ("load", "load", lambda: cases.run_all(ctx, ctx.rounds)),
        ("memory", "memory", lambda: lifecycle.memory(ctx)),
        ("swap", "hot_swap", lambda: lifecycle.hot_swap(ctx)),
        ("startup", "startup", lambda: lifecycle.startup(ctx)),
        ("startup", "many_services", lambda: lifecycle.many_services(ctx)),
    ]
    broken = []
    for section, key, measure in sections:
        if section not in only:
            continue
        if section == "load":
            ctx.log("load cases")
        try:
            result[key] = measure()
        except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
            broken.append(f"{key}: {type(e).__name__}: {e}")
            ctx.log(f"bench: {key} failed: {type(e).__name__}: {e}")
    if result["load"]:
        result["instantiation"] = cases.instantiation(result["load"])
        result["cpu_budget"] = cases.cpu_budget(result["load"], result["machine"]["cores"])
    if broken:
        result["errors"] = broken
    if args.smoke:
        result["notes"].append("smoke run: figures only show that every case works")
    result["run"]["seconds_total"] = round(time.monotonic() - started, 1)
    result["run"]["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    print(report.render(result))
    path = report.write(result, os.path.join(REPO, "bench", "results"))
    ctx.log(f"bench: wrote {path} and bench/results/latest.json"
            f" in {result['run']['seconds_total']} s")
    # A failed case or a non-2xx answer means a case is broken, not slow:
    # the smoke run in CI fails on it.
    failed = [c["key"] for c in result["load"] if c["status"] == "failed" or c.get("non_2xx")
              or any(r["non_2xx"] for r in c["runs"])]
    if failed or broken:
        ctx.log(f"bench: cases failed or answered non-2xx: {', '.join(failed) or 'none'};"
                f" sections broken: {'; '.join(broken) or 'none'}; logs kept in {ctx.workdir}")
        return 1
    shutil.rmtree(ctx.workdir, ignore_errors=True)
    return 0


def terminated(signum, _frame):
    """SIGTERM ends the run as Ctrl-C does: through every `finally`, so the
    servers it started are stopped, not left running."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, terminated)
    sys.exit(main(sys.argv[1:]))
