"""The plugin against a real GNU Mailman 3.3.10 where things go wrong: a
stop signal while the mq runner backs off or publishes (never a shunted
mail, never a duplicate), corrupt parked files (each parked mail retried on
its own), a bad URL template or a missing ``[general] base`` (logged, never
raised into Mailman), a panic of the native client (the mail parked), and
mails queued while the client cannot open (published in queue order).
Each test runs its own site in a temp dir (test_real_mailman's helpers);
brokers that a test stops are private redis-servers it starts itself."""

import json
import os
import platform
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from test_real_mailman import (
    HERE,
    REDIS_URL,
    VENV_BIN,
    load_bindings_conftest,
    redis_stream,
    run,
    wait_for,
    write_site,
)

FQDN = "pub@example.org"


def small_mail(n=0):
    """A small mail Mailman passes to its archivers."""
    return (f"Message-ID: <robust-{n}-{uuid.uuid4().hex}@example.org>\n"
            "From: Ann Example <ann@example.org>\n"
            f"To: {FQDN}\n"
            f"Subject: robustness {n}\n"
            "Date: Tue, 24 Nov 2026 10:00:00 +0000\n"
            "\n"
            "hello\n").encode()


class Site:
    """A Mailman site under tmp with the list FQDN (public)."""

    def __init__(self, tmp, url, options, **kw):
        self.tmp = tmp
        self.cfg = write_site(tmp, url, options, **kw)
        self.helper = [sys.executable, str(HERE / "mm_helper.py"), str(self.cfg)]
        self.queues = tmp / "var" / "queue"
        self.log_file = tmp / "var" / "logs" / "mailman.log"
        run(*self.helper, "setup", FQDN, "public")

    def log(self):
        return self.log_file.read_text() if self.log_file.exists() else ""

    def entries(self, queue, ext=None):
        directory = self.queues / queue
        names = sorted(os.listdir(directory)) if directory.exists() else []
        return [n for n in names if ext is None or n.endswith(ext)]

    def archive(self, raw, name="mail.eml"):
        """Archiver.archive_message on the mail, as the archive runner calls it."""
        path = self.tmp / name
        path.write_bytes(raw)
        return json.loads(run(*self.helper, "archive", FQDN, str(path)))

    def start_runner(self, name="mq"):
        return subprocess.Popen([str(VENV_BIN / "runner"), "-C", str(self.cfg), "-r", name],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(process, signum=signal.SIGTERM):
    """Signals the runner we started (by its pid) and waits; returns its exit code."""
    if process.poll() is None:
        process.send_signal(signum)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"{process.args} did not stop within 60 s of signal {signum}")


def in_futex_wait(pid):
    """Whether the process's main thread blocks in futex(2): in the mq
    runner, inside a native call (block_on with the GIL released)."""
    futex = {"x86_64": "202", "aarch64": "98"}.get(platform.machine())
    if futex is None:
        return True  # cannot tell: go on at once
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] == futex
    except (OSError, IndexError):
        return False


def test_stop_signal_in_backoff_keeps_the_entry_queued(tmp_path):
    """The broker is unreachable (a private redis-server not started yet),
    the mq runner backs off with the entry; SIGTERM during the back-off
    sleep: the runner exits 15 (the master does not restart it), the entry
    is still in queue/mq and nothing is shunted. With Redis up and the
    runner started again, the mail is published exactly once."""
    bindings = load_bindings_conftest()
    (tmp_path / "redis").mkdir()
    server = bindings.PrivateRedis(tmp_path / "redis")  # its port stays closed until start()
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    site = Site(tmp_path, server.url, {"prefix": prefix})
    runner = site.start_runner()
    try:
        wait_for(lambda: "retrying with the next mail" in site.log(), 60, "the runner's first attempt to open")
        site.archive(small_mail())
        # The back-off doubles from 0.5 s; once it is 4 s the runner is
        # (almost surely) in that sleep when the signal lands.
        wait_for(lambda: "retrying in 4.0 s" in site.log(), 60, "the runner backing off 4 s")
        assert runner.poll() is None, runner.stderr.read().decode()
        code = stop(runner)
        stderr = runner.stderr.read().decode()
        assert code == signal.SIGTERM, f"exit {code}: {stderr}"
        assert site.entries("shunt") == [], f"shunted: {site.log()[-3000:]}"
        assert len(site.entries("mq", ".pck")) == 1, site.entries("mq")
        assert site.entries("bad") == []

        server.start()
        runner = site.start_runner()
        client = server.client()
        stream = redis_stream(prefix, FQDN)
        wait_for(lambda: client.xlen(stream) >= 1 and not site.entries("mq"), 60, "the mail published")
        assert stop(runner) == signal.SIGTERM
        assert client.xlen(stream) == 1
        assert site.entries("shunt") == [] and site.entries("mq") == []
    finally:
        stop(runner)
        server.stop()


def test_stop_signal_during_publish_finishes_the_entry(tmp_path):
    """The mq runner is connected to a private redis-server, which we then
    pause (SIGSTOP, by pid): a mail's publish blocks in the native client;
    SIGTERM lands while it blocks; Redis resumes. The runner finishes the
    entry (published once), then stops with exit 15: nothing in queue/mq,
    nothing shunted, exactly one copy in the stream."""
    bindings = load_bindings_conftest()
    (tmp_path / "redis").mkdir()
    server = bindings.PrivateRedis(tmp_path / "redis")
    server.start()
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    site = Site(tmp_path, server.url, {"prefix": prefix, "publish-timeout": "60s"})
    runner = site.start_runner()
    paused = False
    try:
        probe = server.client()
        wait_for(lambda: len(probe.client_list()) >= 2, 60, "the mq runner connected to Redis")
        probe.close()
        os.kill(server.process.pid, signal.SIGSTOP)
        paused = True
        site.archive(small_mail())
        wait_for(lambda: site.entries("mq", ".bak"), 30, "the mq runner taking the entry")
        wait_for(lambda: in_futex_wait(runner.pid), 30, "the mq runner blocking in the publish")
        runner.send_signal(signal.SIGTERM)
        os.kill(server.process.pid, signal.SIGCONT)
        paused = False
        code = stop(runner)
        stderr = runner.stderr.read().decode()
        assert code == signal.SIGTERM, f"exit {code}: {stderr}"
        assert site.entries("shunt") == [], f"shunted: {site.log()[-3000:]}"
        assert site.entries("mq") == [] and site.entries("bad") == []
        assert server.client().xlen(redis_stream(prefix, FQDN)) == 1
    finally:
        if paused:
            os.kill(server.process.pid, signal.SIGCONT)
        stop(runner)
        server.stop()


def parked_entry(parked, hash_, raw, meta=None):
    """Writes a parked mail as the runner parks it (hash.0.eml + .json)."""
    parked.mkdir(parents=True, exist_ok=True)
    (parked / f"{hash_}.0.eml").write_bytes(raw)
    meta = meta if meta is not None else {"list_id": FQDN.replace("@", "."), "list_address": FQDN,
                                          "archive_policy": "public", "reason": "TooLargeError: test", "at": 0}
    (parked / f"{hash_}.0.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))


def test_retry_parked_goes_past_corrupt_files(tmp_path):
    """Three parked mails, sorted first a corrupt .json, then an .eml that
    cannot be read (a directory), then a good one: retry-parked moves the
    good one (published by the mq runner), leaves the two bad ones in
    place, says both counts and exits non-zero."""
    import redis

    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    site = Site(tmp_path, REDIS_URL, {"prefix": prefix})
    parked = tmp_path / "var" / "mq-archiver" / "parked"
    parked_entry(parked, "AAAA", small_mail(1), meta="{not json")
    parked_entry(parked, "BBBB", small_mail(2))
    (parked / "BBBB.0.eml").unlink()
    (parked / "BBBB.0.eml").mkdir()
    good = small_mail(3)
    parked_entry(parked, "CCCC", good)
    done = subprocess.run([sys.executable, "-m", "mq_archiver.mailman", "-C", str(site.cfg), "retry-parked"],
                          capture_output=True, text=True)
    assert done.returncode != 0, done
    assert "1 parked entries moved back into queue/mq, 2 could not be moved" in done.stdout, done
    assert sorted(p.name for p in parked.iterdir()) == ["AAAA.0.eml", "AAAA.0.json", "BBBB.0.eml", "BBBB.0.json"]
    log = site.log()
    assert "AAAA.0" in log and "BBBB.0" in log
    assert len(site.entries("mq", ".pck")) == 1

    client = redis.Redis.from_url(REDIS_URL)
    runner = site.start_runner()
    try:
        stream = redis_stream(prefix, FQDN)
        wait_for(lambda: client.xlen(stream) >= 1 and not site.entries("mq"), 60, "the retried mail published")
        assert stop(runner) == signal.SIGTERM
        assert [fields[b"body"] for _, fields in client.xrange(stream)] == [good]
    finally:
        stop(runner)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def test_bad_template_is_logged_never_raised(tmp_path):
    """A permalink and a list_url template naming an unknown field: the
    URLs are None with an error logged for each call, and archive_message
    still enqueues the mail (no "could not enqueue")."""
    site = Site(tmp_path, REDIS_URL, {"prefix": "unused"},
                general={"permalink": "{base}/{nope}/{hash}/", "list_url": "{base}/{nope}/"})
    assert site.archive(small_mail()) is None
    assert len(site.entries("mq", ".pck")) == 1
    assert "could not enqueue" not in site.log(), site.log()
    assert site.log().count("cannot compute") == 1, site.log()
    mail = tmp_path / "urls.eml"
    mail.write_bytes(small_mail())
    urls = json.loads(run(*site.helper, "urls", FQDN, str(mail)))
    assert urls == {"list_url": None, "permalink": None}
    assert site.log().count("cannot compute") == 3, site.log()


def test_missing_base_is_a_clear_configuration_error(tmp_path):
    """No [general] base: the URLs are None with an error naming the file;
    archive_message still enqueues; the mq runner logs the configuration
    error and keeps the entry in queue/mq (no shunt); restarted with the
    file fixed, it publishes the mail."""
    import redis

    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    site = Site(tmp_path, REDIS_URL, {"prefix": prefix}, base=None)
    cfg_file = str(tmp_path / "mq-archiver.cfg")
    mail = tmp_path / "urls.eml"
    mail.write_bytes(small_mail())
    urls = json.loads(run(*site.helper, "urls", FQDN, str(mail)))
    assert urls == {"list_url": None, "permalink": None}
    assert site.log().count(f"[general] base missing in {cfg_file}") == 2, site.log()
    assert site.archive(small_mail()) is None
    assert len(site.entries("mq", ".pck")) == 1
    runner = site.start_runner()
    try:
        wait_for(lambda: "retrying in " in site.log(), 60, "the mq runner retrying the entry")
        assert runner.poll() is None, runner.stderr.read().decode()
        assert "the configuration is wrong ([general] base missing in " in site.log()
        code = stop(runner)
        assert code == signal.SIGTERM, runner.stderr.read().decode()
        assert site.entries("shunt") == [] and len(site.entries("mq", ".pck")) == 1

        # Fixed and restarted: the queued mail is published.
        write_site(tmp_path, REDIS_URL, {"prefix": prefix})
        client = redis.Redis.from_url(REDIS_URL)
        runner = site.start_runner()
        stream = redis_stream(prefix, FQDN)
        wait_for(lambda: client.xlen(stream) >= 1 and not site.entries("mq"), 60, "the queued mail published")
        assert stop(runner) == signal.SIGTERM
        assert client.xlen(stream) == 1 and site.entries("shunt") == []
    finally:
        stop(runner)
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def test_native_panic_parks_the_mail(tmp_path):
    """The native client panics (PyO3's PanicException, a BaseException)
    in archive_message: the mq Runner's _dispose parks the mail with the
    reason and stops the runner with status 1 (the master starts a fresh
    one) instead of letting the exception kill it mid-entry."""
    bindings = load_bindings_conftest()
    site = Site(tmp_path, f"redis://127.0.0.1:{bindings.free_port()}", {"prefix": "unused"})
    mail = tmp_path / "panic.eml"
    raw = small_mail()
    mail.write_bytes(raw)
    done = subprocess.run([*site.helper, "dispose-panic", FQDN, str(mail)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"keep": False, "stop": True, "status": 1}
    parked = tmp_path / "var" / "mq-archiver" / "parked"
    emls = list(parked.glob("*.eml"))
    assert len(emls) == 1 and emls[0].read_bytes() == raw
    meta = json.loads(emls[0].with_suffix(".json").read_text())
    assert meta["reason"].startswith("PanicException: ")
    assert "panicked" in site.log()


def test_order_is_kept_while_the_client_cannot_open(tmp_path):
    """Three mails wait in queue/mq while the broker is unreachable (a
    private redis-server not started yet); it starts while the runner backs
    off on the first. They must reach the stream in the order they were
    queued: an entry handed back to Mailman would join the end of the
    queue, behind the ones queued after it."""
    bindings = load_bindings_conftest()
    (tmp_path / "redis").mkdir()
    server = bindings.PrivateRedis(tmp_path / "redis")
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    site = Site(tmp_path, server.url, {"prefix": prefix})
    mails = [small_mail(n) for n in range(3)]
    for n, raw in enumerate(mails):
        site.archive(raw, name=f"mail-{n}.eml")
    assert len(site.entries("mq", ".pck")) == 3
    runner = site.start_runner()
    try:
        wait_for(lambda: "retrying in 1.0 s" in site.log(), 60, "the runner backing off 1 s")
        server.start()
        client = server.client()
        stream = redis_stream(prefix, FQDN)
        wait_for(lambda: client.xlen(stream) >= 3 and not site.entries("mq"), 60, "the mails published")
        assert stop(runner) == signal.SIGTERM
        published = [fields[b"body"] for _, fields in client.xrange(stream)]
        order = [next(n for n, raw in enumerate(mails) if raw.split(b"\n")[0] in body) for body in published]
        assert order == [0, 1, 2], f"published in the order {order}"
        assert site.entries("shunt") == []
    finally:
        stop(runner)
        server.stop()


def test_order_is_kept_across_a_stop_during_backoff(tmp_path):
    """Three mails wait in queue/mq, the broker is unreachable, and the
    runner is stopped (SIGTERM) while it backs off on the first: the
    entry stays in its place (not re-queued behind the other two), so once
    the broker is up and the runner started again the three arrive in
    queue order."""
    bindings = load_bindings_conftest()
    (tmp_path / "redis").mkdir()
    server = bindings.PrivateRedis(tmp_path / "redis")
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    site = Site(tmp_path, server.url, {"prefix": prefix})
    mails = [small_mail(n) for n in range(3)]
    for n, raw in enumerate(mails):
        site.archive(raw, name=f"mail-{n}.eml")
    queued = site.entries("mq", ".pck")
    assert len(queued) == 3
    runner = site.start_runner()
    try:
        wait_for(lambda: "retrying in 1.0 s" in site.log(), 60, "the runner backing off 1 s")
        assert stop(runner) == signal.SIGTERM
        assert site.entries("mq") == queued, "the entries are not where they were"
        server.start()
        runner = site.start_runner()
        client = server.client()
        stream = redis_stream(prefix, FQDN)
        wait_for(lambda: client.xlen(stream) >= 3 and not site.entries("mq"), 60, "the mails published")
        assert stop(runner) == signal.SIGTERM
        published = [fields[b"body"] for _, fields in client.xrange(stream)]
        order = [next(n for n, raw in enumerate(mails) if raw.split(b"\n")[0] in body) for body in published]
        assert order == [0, 1, 2], f"published in the order {order}"
        assert site.entries("shunt") == []
    finally:
        stop(runner)
        server.stop()
