"""The load an instrumented build runs under so that the compiler can lay
out and inline its code for the paths a serving host takes (profile-
guided optimisation; scripts/build-pgo calls this). Each server writes its
profile when it exits, to the files LLVM_PROFILE_FILE names.

    train.py BAZAAR NATIVE [--seconds N]
    train.py --inputs    # the files, besides the binaries, a profile depends on

The load is the benchmark's kind, shorter: hello, key-value reads and
writes and the Python hello (when built), each with fresh and warm
instances, at 16 and 64 connections, then the native ceiling on its own
hello; the profiles record which branches, calls and loops ran, not how
fast."""

import argparse
import os
import shutil
import sys
import tempfile

from cases import KV_PATH, KV_VALUE, prime_kv
from hosts import Bazaar, Native
from load import wrk

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPONENTS = os.path.join(REPO, "components", "target")


def components():
    """The components the training serves, by service name."""
    found = {
        "hello": os.path.join(COMPONENTS, "wasm32-wasip2", "release", "hello.wasm"),
        "tb": os.path.join(COMPONENTS, "wasm32-wasip2", "release", "testbed.wasm"),
    }
    py = os.path.join(COMPONENTS, "py-hello.wasm")
    if os.path.exists(py):
        found["py"] = py
    return found


def inputs():
    """What a profile depends on besides the binaries, for scripts/build-pgo
    to name it by: the components served, this directory's scripts, and
    the Python hello by its source (componentize-py's output differs from
    build to build, and scripts/test builds it every run)."""
    served = components()
    files = [served["hello"], served["tb"]]
    here = os.path.dirname(os.path.abspath(__file__))
    files += sorted(os.path.join(here, f) for f in os.listdir(here) if f.endswith(".py"))
    if "py" in served:
        files.append(os.path.join(REPO, "components", "py-hello", "app.py"))
    return [os.path.relpath(f, REPO) for f in files]


def services():
    """Each component twice: `NAME` with fresh instances, `NAME-warm`
    with warm ones."""
    table = {}
    for name, component in components().items():
        for suffix, extra in (("", {}), ("-warm", {"instance_reuse": 1000})):
            table[name + suffix] = {
                "component": component,
                "routes": [f"/{name}{suffix}", f"/{name}{suffix}/{{*rest}}"],
                **extra,
            }
    return table


def load(url, seconds, method=None, body=None):
    """`url` under load at 16 and 64 connections. A run in which no
    request succeeded ends the training: a profile of error paths would
    lay the host out for them, and it means the training has rotted."""
    for connections in (16, 64):
        run = wrk(url, connections, seconds, 1, method, body)
        print(f"  {url} at {connections}: {run['rps']:.0f} req/s, {run['errors']} errors",
              file=sys.stderr, flush=True)
        if run["requests"] <= run["non_2xx"]:
            sys.exit(f"train.py: no request to {url} succeeded at {connections} connections")


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    if argv == ["--inputs"]:
        print("\n".join(inputs()))
        return
    p.add_argument("bazaar")
    p.add_argument("native")
    p.add_argument("--seconds", type=int, default=2, help="per load run (2)")
    args = p.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="bazaar-pgo-")
    try:
        table = services()
        cache = os.path.join(REPO, "bench", ".cache", "code")
        host = Bazaar(args.bazaar, workdir, "train", table, cache)
        try:
            host.wait_services()
            for suffix in ("", "-warm"):
                load(f"{host.url}/hello{suffix}", args.seconds)
                kv = KV_PATH.replace("/tb/", f"/tb{suffix}/")
                prime_kv(host, kv)
                load(host.url + kv, args.seconds)
                load(host.url + kv, args.seconds, "PUT", KV_VALUE)
                if f"py{suffix}" in table:
                    load(f"{host.url}/py{suffix}", args.seconds)
        finally:
            host.stop()
        native = Native(args.native, workdir)
        try:
            load(native.url + "/hello", args.seconds)
        finally:
            native.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
