"""Servers under test as child processes: start, wait until ready, measure
resident memory, stop; and a small HTTP client for probes and polling."""

import http.client
import os
import signal
import socket
import subprocess
import time
import urllib.parse


class StartError(Exception):
    """A server exited or never became ready; carries its last log lines."""


class Server:
    """One child process with its stdout and stderr in files under `workdir`
    (files, not pipes: a busy access log must never block the server)."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.out_path = os.path.join(workdir, f"{name}.out")
        self.err_path = os.path.join(workdir, f"{name}.err")
        self.started = time.monotonic()
        # No backtraces: a failed start is reported by its error message.
        env = dict(env if env is not None else os.environ, RUST_BACKTRACE="0")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env
            )

    @property
    def pid(self):
        return self.proc.pid

    def log_tail(self, lines=8):
        text = ""
        for path in (self.out_path, self.err_path):
            with open(path, "rb") as f:
                text += f.read()[-4000:].decode(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_line(self, prefix, timeout):
        """The rest of the first stdout or stderr line starting with
        `prefix`; polled every 2 ms, as start-up times are measured by it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in (self.out_path, self.err_path):
                with open(path, "rb") as f:
                    for line in f.read().decode(errors="replace").splitlines():
                        if line.startswith(prefix):
                            return line[len(prefix):].strip()
            if self.proc.poll() is not None:
                raise StartError(f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}")
            time.sleep(0.002)
        raise StartError(f"{self.name} printed no `{prefix}` in {timeout}s: {self.log_tail()}")

    def check_alive(self):
        if self.proc.poll() is not None:
            raise StartError(f"{self.name} exited ({self.proc.returncode}): {self.log_tail()}")

    def rss_kib(self):
        """VmRSS from /proc: what the process holds in RAM now."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        """User and system CPU seconds the process (every thread, live or
        exited) has used so far, from /proc/PID/stat, as a pair."""
        with open(f"/proc/{self.pid}/stat") as f:
            # Fields after the command name, which may hold spaces: state
            # is [0], utime [11], stime [12], in clock ticks.
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port():
    """A loopback port nobody listens on now, for servers without port 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """Keep-alive HTTP/1.1 to one base URL; reconnects after an error."""

    def __init__(self, base, timeout=10):
        parsed = urllib.parse.urlsplit(base)
        self.host, self.port = parsed.hostname, parsed.port
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        """(status, lower-cased headers, body bytes)."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                response = self.conn.getresponse()
                data = response.read()
                head = {k.lower(): v for k, v in response.getheaders()}
                if head.get("connection", "").lower() == "close":
                    self.close()
                return response.status, head, data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def wait_http(base, path, timeout, accept, server=None, headers=None):
    """Polls GET base+path until `accept(status, headers)` holds; the
    seconds it took. Refused connections and errors count as not yet."""
    client = Client(base, timeout=5)
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if server is not None:
                server.check_alive()
            try:
                status, head, _ = client.request("GET", path, headers=headers)
                if accept(status, head):
                    return time.monotonic() - start
            except OSError:
                pass
            time.sleep(0.005)
    finally:
        client.close()
    raise StartError(f"{base}{path} not ready in {timeout}s")
