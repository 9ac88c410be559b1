"""A real HyperKitty 1.3.12 (target/hyperkitty-venv, made by
scripts/hyperkitty-venv; the site script is hyperkitty-bridge's test
harness) and our hyperkitty-bridge binary, for the tests that take mail
from Mailman all the way into HyperKitty. Both are started on spare ports
and stopped by pid."""

import json
import os
import socket
import subprocess
import time

import pytest

from test_real_mailman import REPO

SITE_SCRIPT = REPO / "hyperkitty-bridge" / "tests" / "site" / "hk_site.py"
KEY = "bridge-test-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hyperkitty_python():
    """The HyperKitty venv's python; skips without it (fails with
    ARCHIVER_REQUIRE_PYTHON set)."""
    venv = os.environ.get("HYPERKITTY_VENV") or str(REPO / "target" / "hyperkitty-venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        message = f"no HyperKitty venv at {venv} (run scripts/hyperkitty-venv)"
        if os.environ.get("ARCHIVER_REQUIRE_PYTHON"):
            pytest.fail(message + ", and ARCHIVER_REQUIRE_PYTHON is set")
        pytest.skip(message)
    return python


def target_binary(name):
    """A binary of the workspace's dev build (scripts/test-mailman builds it)."""
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    path = os.path.join(target, "debug", name)
    assert os.path.exists(path), f"{path} missing: cargo build -p hyperkitty-bridge"
    return path


class HyperKitty:
    """A HyperKitty site on sqlite in `directory`, not serving until
    :meth:`start`."""

    def __init__(self, directory):
        self.python = hyperkitty_python()
        self.dir = str(directory)
        self.port = free_port()
        self.server = None
        subprocess.run([self.python, str(SITE_SCRIPT), "setup", self.dir, KEY], check=True)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/hyperkitty/"

    def private_list(self, address):
        """Pre-creates a private list, as an operator does before the bridge posts to it."""
        subprocess.run([self.python, str(SITE_SCRIPT), "private-list", self.dir, address], check=True)

    def start(self):
        log = open(os.path.join(self.dir, "server.log"), "ab")
        self.server = subprocess.Popen([self.python, str(SITE_SCRIPT), "serve", self.dir, str(self.port)],
                                       stdout=subprocess.DEVNULL, stderr=log)
        end = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.server.poll() is None, f"HyperKitty exited: {self.log()}"
                assert time.monotonic() < end, f"HyperKitty did not start: {self.log()}"
                time.sleep(0.1)

    def stop(self):
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait()
        self.server = None

    def log(self):
        path = os.path.join(self.dir, "server.log")
        return open(path, errors="replace").read()[-3000:] if os.path.exists(path) else ""

    def emails(self):
        """{"emails": [{list, archive_policy, message_id, message_id_hash}], "lists": [...]}."""
        done = subprocess.run([self.python, str(SITE_SCRIPT), "emails", self.dir],
                              check=True, capture_output=True, text=True)
        return json.loads(done.stdout)


class Bridge:
    """hyperkitty-bridge on the broker `url` (option prefix) into `hyperkitty`."""

    def __init__(self, directory, url, prefix, hyperkitty):
        self.log_path = os.path.join(str(directory), "bridge.log")
        env = dict(os.environ, ARCHIVER_URL=url, ARCHIVER_PREFIX=prefix, HYPERKITTY_API_KEY=KEY,
                   RUST_LOG="info")
        self.process = subprocess.Popen(
            [target_binary("hyperkitty-bridge"), "--base-url", hyperkitty.base_url, "--concurrency", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"))

    def log(self):
        return open(self.log_path, errors="replace").read()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
