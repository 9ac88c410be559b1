"""Fixtures of the bindings' tests: mails, a Redis client with a prefix of
the test's own (deleted afterwards), and a private redis-server for tests
that stop the broker."""

import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis

REDIS_URL = os.environ.get("ARCHIVER_TEST_REDIS_URL", "redis://127.0.0.1:6379")
BASE_URL = "https://archive.example.org/list/{list_id}/"
LIST_ID = "dev.lists.example.org"
LIST_ADDRESS = "dev@lists.example.org"


def mail(message_id="<12345>", extra_headers=b"", body=b"hello\r\n"):
    """A small mail with the given Message-ID (its hash is known for <12345>)."""
    return (
        b"Message-ID: " + message_id.encode() + b"\r\n"
        b"From: Ann Example <ann@example.org>\r\n"
        b"To: dev@lists.example.org\r\n"
        b"Subject: [Dev] hello\r\n"
        b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
        + extra_headers
        + b"\r\n"
        + body
    )


def wait_until(predicate, timeout, what):
    """Polls predicate until it is true, failing after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def prefix():
    """A Redis key prefix of this test's own."""
    return f"pytest-{os.getpid()}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_client(prefix):
    """A client of the shared Redis; deletes the test's keys afterwards.
    Fails (does not skip) when Redis is down: scripts/test starts it."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({error}); scripts/setup-machine starts it")
    yield client
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own on a spare port, in a temp dir,
    started and stopped by pid (never by name)."""

    def __init__(self, directory):
        self.directory = directory
        self.port = free_port()
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def start(self):
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()

        def up():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        wait_until(up, 10, f"redis-server on port {self.port}")
        client.close()

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port)


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
