"""The servers the benchmark compares: Bazaar (from a generated gateway
file), `wasmtime serve` and the native axum ceiling."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time
import tomllib

from procs import Server, StartError, free_port, wait_http

# At least 32 characters, as the host requires of both.
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef0123456789"
JWT_KEY = "bench-jwt-signing-key-0123456789abcdef0123456789"


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_dump(table, prefix=""):
    """TOML text for the subset gateway files use: scalars, lists of
    scalars, tables and arrays of tables."""
    lines, nested = [], []
    for key, value in table.items():
        if isinstance(value, dict):
            nested.append((key, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            nested.append((key, value))
        else:
            lines.append(f"{key} = {toml_value(value)}")
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in nested:
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            text += f"\n[{name}]\n" + toml_dump(value, name + ".")
        else:
            for item in value:
                text += f"\n[[{name}]]\n" + toml_dump(item, name + ".")
    return text


def gateway_file(path, data_dir, cache_dir, services):
    """Writes a gateway file on ephemeral loopback ports; `services` maps a
    name to its `[services.NAME]` table (component paths absolute)."""
    config = {
        "gateway": {"listen": "127.0.0.1:0", "watch": False},
        "admin": {"listen": "127.0.0.1:0", "token": ADMIN_TOKEN},
        "data": {"dir": data_dir, "cache_dir": cache_dir},
        "services": services,
    }
    with open(path, "w") as f:
        f.write(toml_dump(config))
    return path


def demo_services(repo):
    """The repo's gateway.toml services, with absolute component paths."""
    with open(os.path.join(repo, "gateway.toml"), "rb") as f:
        services = tomllib.load(f)["services"]
    for spec in services.values():
        spec["component"] = os.path.join(repo, spec["component"])
    return services


def admin_jwt():
    """An admin token signed with JWT_KEY (HS256, the claims the host
    checks), so probes get past `access` rules without asking the host."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": "bench", "roles": ["admin"], "iss": "bazaar", "iat": now, "exp": now + 86400}
    body = b64(json.dumps(claims).encode())
    signature = hmac.new(JWT_KEY.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def probe_path(spec):
    """A path of the service's first route, with its parameters filled in."""
    route = spec["routes"][0]
    parts = ["bench-probe" if p.startswith("{") else p for p in route.split("/")]
    return "/".join(parts)


class Bazaar:
    """`bazaar serve` on a generated gateway file, at the default log level
    (RUST_LOG unset), as an operator would run it."""

    def __init__(self, binary, workdir, name, services, cache_dir):
        self.binary, self.services, self.name = binary, services, name
        data_dir = os.path.join(workdir, f"{name}-data")
        # Started afresh means with no data either: a round's key-value
        # cases never find the writes of the round before.
        shutil.rmtree(data_dir, ignore_errors=True)
        self.config = gateway_file(
            os.path.join(workdir, f"{name}.toml"), data_dir, cache_dir, services
        )
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        env["BAZAAR_JWT_KEY"] = JWT_KEY
        self.server = Server(name, [binary, "serve", "--config", self.config], workdir, env)
        try:
            self.url = self.server.wait_line("bazaar: gateway listening on ", 600)
            self.listening_s = time.monotonic() - self.server.started
            self.admin_url = self.server.wait_line("bazaar: admin API listening on ", 60)
        except BaseException:
            # Whatever ends the wait (a failed start, Ctrl-C), the server goes.
            self.server.stop()
            raise

    def wait_services(self, timeout=600):
        """Seconds from spawn until every service answered from its own code
        (its name in x-bazaar-service, not a 503 while it compiles); all of
        them within `timeout` seconds."""
        token = {"authorization": f"Bearer {admin_jwt()}"}
        deadline = time.monotonic() + timeout
        for name, spec in self.services.items():
            def answered(status, head, name=name):
                return head.get("x-bazaar-service") == name and status != 503
            left = max(0.0, deadline - time.monotonic())
            wait_http(self.url, probe_path(spec), left, answered, self.server, token)
        return time.monotonic() - self.server.started

    def deploy_cli(self, name, component, route):
        """`bazaar deploy NAME FILE --route ROUTE`, as an operator adds a service."""
        subprocess.run(
            [self.binary, "--config", self.config, "deploy", name, component, "--route", route,
             "--admin-url", self.admin_url, "--token", ADMIN_TOKEN],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300,
        )

    def stop(self):
        self.server.stop()


def serve_ok(status, _head):
    return status == 200


class WasmtimeServe:
    """`wasmtime serve` 48.0.8 on a component, with extra flags."""

    def __init__(self, binary, workdir, name, component, flags):
        port = free_port()
        argv = [binary, "serve", "--addr", f"127.0.0.1:{port}", *flags, component]
        self.server = Server(name, argv, workdir)
        self.url = f"http://127.0.0.1:{port}"
        try:
            wait_http(self.url, "/hello", 600, serve_ok, self.server)
        except BaseException:
            # Whatever ends the wait (a failed start, Ctrl-C), the server goes.
            self.server.stop()
            raise

    def stop(self):
        self.server.stop()


class Native:
    """The axum ceiling, `bench/native-hello`."""

    def __init__(self, binary, workdir):
        self.server = Server("native", [binary], workdir)
        try:
            self.url = self.server.wait_line("native-hello listening on ", 60)
        except BaseException:
            # Whatever ends the wait (a failed start, Ctrl-C), the server goes.
            self.server.stop()
            raise

    def stop(self):
        self.server.stop()
