"""A real GNU Mailman 3.3.10 (sqlite, null MTA, in a temp dir) with our
archiver `mq_archiver.mailman` and Mailman's own `prototype` archiver both
enabled with the same clobber_date: corpus mails are injected into a
public and a private list and the in, pipeline, archive and mq runners
run until their queues are empty. For Redis, RabbitMQ and ZeroMQ, an
archive server reading the wire format (redis-py streams, pika from the
unrouted queue, pyzmq through the hub protocol: the bindings have no
consumer) must hold every mail byte-identical to what prototype wrote,
with the right list id, list address and archive policy. Also: a refused
mail is parked and retried; a Redis outage (all mails spooled) loses
nothing; and with Mailman's real master (`mailman start`), mails posted
with `mailman inject` while Redis is down, the master's process group
killed -9 with mail in queue/mq or the spool, then `mailman start
--force`: nothing lost. The big runs inject in one process
(mm_helper.py, inject_text: what `mailman inject` calls) because one
`mailman inject` costs about a second of imports."""

import email.parser
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from mq_archiver.mailman import message_id_hash

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CORPUS = Path(os.environ.get("ARCHIVER_CORPUS", REPO.parent / "shared" / "corpus" / "lists.mbox"))
REDIS_URL = "redis://127.0.0.1:6379"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
SEPARATOR = b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"
LISTS = {"pub@example.org": "public", "priv@example.org": "private"}
#: How many corpus mails each list gets (at least 200 in all).
PER_LIST = 120
BASE = "https://lists.example.org/archives"
VENV_BIN = Path(sys.executable).parent
ROOT = ["--run-as-root"] if os.geteuid() == 0 else []


def redis_stream(prefix, fqdn):
    """The Redis stream of a list's mails: `<p>:stream:<class>:mail:{<list-id>}`,
    the class being the list's archive policy (backend-redis keys.rs)."""
    return f"{prefix}:stream:{LISTS[fqdn]}:mail:{{{fqdn.replace('@', '.')}}}"


def corpus_mails():
    """The corpus's mails as their sources stored them (mboxrd undone),
    keeping those with a Subject (Mailman holds a mail without one) and a
    Message-ID not seen before."""
    if not CORPUS.exists():
        if os.environ.get("ARCHIVER_REQUIRE_CORPUS"):
            pytest.fail(f"corpus {CORPUS} missing and ARCHIVER_REQUIRE_CORPUS is set")
        pytest.skip(f"corpus {CORPUS} missing (set ARCHIVER_CORPUS, or ARCHIVER_REQUIRE_CORPUS to fail)")
    data = CORPUS.read_bytes()
    assert data.startswith(SEPARATOR)
    seen, mails = set(), []
    for chunk in data[len(SEPARATOR):].split(b"\n" + SEPARATOR):
        chunk = chunk[:-1] if chunk.endswith(b"\n\n") else chunk  # the blank line mboxrd adds
        raw = re.sub(rb"(?m)^>(>*From )", rb"\1", chunk)
        headers = email.parser.BytesHeaderParser().parsebytes(raw)
        mid = headers.get("message-id")
        if not headers.get("subject") or not mid or mid in seen:
            continue
        seen.add(mid)
        mails.append(raw)
    return mails


def run(*argv, **kw):
    """Runs a command, failing the test with its output when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def write_site(tmp, url, options, smtp_port=None, base=BASE, general=None, extra_cfg=""):
    """mailman.cfg and the plugin's configuration file under tmp (the out
    runner, which only the master starts, delivers to smtp_port); `base`
    None leaves [general] base out, `general` adds settings to [general],
    `extra_cfg` is appended to mailman.cfg."""
    (tmp / "mq-archiver.cfg").write_text(
        f"[general]\nurl: {url}\n" + (f"base: {base}\n" if base is not None else "")
        + "".join(f"{k}: {v}\n" for k, v in (general or {}).items())
        + "\n[options]\n"
        + "".join(f"{k}: {v}\n" for k, v in options.items())
    )
    cfg = tmp / "mailman.cfg"
    cfg.write_text(f"""\
[mailman]
site_owner: owner@example.org
layout: local

[paths.local]
var_dir: {tmp}/var

[mta]
incoming: mailman.mta.null.NullMTA
{f"smtp_host: 127.0.0.1{chr(10)}smtp_port: {smtp_port}" if smtp_port else ""}

[runner.rest]
start: no

[runner.lmtp]
start: no

[archiver.prototype]
enable: yes
clobber_date: always

[archiver.mq]
class: mq_archiver.mailman.Archiver
enable: yes
configuration: {tmp}/mq-archiver.cfg
clobber_date: always

[runner.mq]
class: mq_archiver.mailman.Runner
instances: 1
""" + extra_cfg)
    return cfg


def post_and_archive(tmp, cfg, mails, per_list=PER_LIST, **hooks):
    """Creates the lists, injects the mails, runs each runner once;
    returns the held count per list."""
    helper = [sys.executable, str(HERE / "mm_helper.py"), str(cfg)]
    for n, (fqdn, policy) in enumerate(LISTS.items()):
        run(*helper, "setup", fqdn, policy)
        batch = tmp / f"batch-{n}"
        batch.mkdir()
        for i, raw in enumerate(mails[n * per_list:(n + 1) * per_list]):
            (batch / f"{i:04}.eml").write_bytes(raw)
        run(*helper, "inject", fqdn, str(batch))
    run_runners(tmp, cfg, **hooks)
    return {fqdn: int(run(*helper, "held", fqdn).strip()) for fqdn in LISTS}


RUNNERS = ("in", "pipeline", "archive", "mq")


def run_runners(tmp, cfg, first=None, done=None, stop_signal=signal.SIGTERM, deadline=300):
    """Runs the in, pipeline, archive and mq runners (`runner -o` handles
    one entry per start: too slow for hundreds) until their queues are all
    empty, then stops them with SIGTERM (they exit 15 after finishing the entry at hand and
    clean up: ours closes its client). A runner enqueues the next queue's
    entry before it deletes its own, so all empty at once means done.
    The mq runner starts first; `first()` runs before the others start
    (a ZeroMQ consumer subscribes to its hub); `done()`, when given, must
    also hold before the runners stop (the consumer got everything)."""
    queues = tmp / "var" / "queue"

    def start(name):
        return subprocess.Popen([str(VENV_BIN / "runner"), "-C", str(cfg), "-r", name],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    procs = [start("mq")]
    try:
        if first is not None:
            first()
        procs += [start(name) for name in RUNNERS if name != "mq"]
        end = time.monotonic() + deadline
        while True:
            left = sum(len(os.listdir(queues / q)) for q in RUNNERS if (queues / q).exists())
            if left == 0 and (queues / "mq").exists() and (done is None or done()):
                break
            for p in procs:
                assert p.poll() is None, f"runner {p.args} died: {p.stderr.read().decode()}"
            assert time.monotonic() < end, f"{left} queue entries left after {deadline} s"
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(stop_signal)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    for p in procs:
        assert p.returncode in (0, signal.SIGTERM, -signal.SIGTERM, -stop_signal), f"{p.args} exited {p.returncode}: {p.stderr.read().decode()}"


def prototype_mails(tmp, fqdn):
    """What prototype wrote for the list, by Message-ID-Hash."""
    maildir = tmp / "var" / "archives" / "prototype" / fqdn / "new"
    out = {}
    for path in maildir.iterdir() if maildir.exists() else []:
        raw = path.read_bytes()
        hash_ = email.parser.BytesHeaderParser().parsebytes(raw)["Message-ID-Hash"].strip()
        assert hash_ not in out
        out[hash_] = raw
    return out


def all_prototype_mails(tmp):
    """What prototype wrote for every list of LISTS, by Message-ID-Hash."""
    return {h: raw for fqdn in LISTS for h, raw in prototype_mails(tmp, fqdn).items()}


def queue_leftovers(tmp):
    """Queue entries nobody processed that should have been (shunt, bad, mq, archive)."""
    queues = tmp / "var" / "queue"
    return {q: sorted(os.listdir(queues / q)) for q in ("shunt", "bad", "archive", "mq")
            if (queues / q).exists() and os.listdir(queues / q)}


def archivable(raw):
    """Whether Mailman's to_archive handler passes the mail on (no
    X-No-Archive, no X-Archive: no)."""
    headers = email.parser.BytesHeaderParser().parsebytes(raw)
    return "x-no-archive" not in headers and (headers.get("x-archive") or "").strip().lower() != "no"


def mailman_hash(raw):
    """The Message-ID-Hash header Mailman added to the mail."""
    return email.parser.BytesHeaderParser().parsebytes(raw)["Message-ID-Hash"].strip()


def compare(tmp, mails, stored_by_list, report):
    """Asserts every list's stored mails equal prototype's (paired by the
    Message-ID-Hash header Mailman put into the mail), and reports counts."""
    for n, (fqdn, policy) in enumerate(LISTS.items()):
        list_id = fqdn.replace("@", ".")
        posted = mails[n * PER_LIST:(n + 1) * PER_LIST]
        reference = prototype_mails(tmp, fqdn)
        stored = stored_by_list[fqdn]
        identical = hash_agrees = 0
        for fields in stored:
            assert fields["list-id"] == list_id
            assert fields["list-address"] == fqdn
            assert fields["archive-policy"] == policy
            key = mailman_hash(fields["body"])
            # The envelope's hash is HyperKitty's, which the plugin's permalinks use.
            assert fields["message-id-hash"] == message_id_hash(email.message_from_bytes(fields["body"]))
            hash_agrees += fields["message-id-hash"] == key
            if reference.get(key) == fields["body"]:
                identical += 1
            else:  # kept for diagnosis: diff it with prototype's file
                (tmp / f"differs-{key}.ours").write_bytes(fields["body"])
        report.append(f"{fqdn} ({policy}): posted {len(posted)}, held 0, archived by prototype {len(reference)}, "
                      f"stored by us {len(stored)}, identical {identical}; "
                      f"envelope Message-ID-Hash equal to Mailman's header: {hash_agrees}")
        assert len(reference) == sum(map(archivable, posted))
        assert len(stored) == len(reference)
        assert sorted(mailman_hash(f["body"]) for f in stored) == sorted(reference)
        assert identical == len(reference)


@pytest.fixture(scope="module")
def mails():
    mails = corpus_mails()
    assert len(mails) >= 2 * PER_LIST, f"only {len(mails)} usable corpus mails"
    return mails


def run_site(tmp_path, mails, url, options, read_stored, backend, capsys, **hooks):
    """Posts, archives, reads back with read_stored(list_id) and compares."""
    cfg = write_site(tmp_path, url, options)
    held = post_and_archive(tmp_path, cfg, mails, **hooks)
    assert held == {fqdn: 0 for fqdn in LISTS}
    assert queue_leftovers(tmp_path) == {}
    assert not (tmp_path / "var" / "mq-archiver" / "parked").exists()
    stored = {fqdn: read_stored(fqdn.replace("@", ".")) for fqdn in LISTS}
    report = []
    try:
        compare(tmp_path, mails, stored, report)
    finally:
        with capsys.disabled():
            print(f"\n{backend}:\n  " + "\n  ".join(report))


def test_redis(tmp_path, mails, capsys):
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"

    def read_stored(list_id):
        return [{k.decode(): (v if k == b"body" else v.decode()) for k, v in fields.items()}
                for _, fields in client.xrange(redis_stream(prefix, list_id.replace(".", "@", 1)))]

    try:
        run_site(tmp_path, mails, REDIS_URL, {"prefix": prefix}, read_stored, "redis", capsys)
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def test_rabbitmq(tmp_path, mails, capsys):
    """No subscriber exists, so every envelope lands in `<p>.unrouted` (the
    backend keeps unrouted mail by default), read there with pika."""
    pika = pytest.importorskip("pika")
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    by_list = {}

    def read_stored(list_id):
        if not by_list:
            while True:
                method, properties, body = channel.basic_get(f"{prefix}.unrouted", auto_ack=True)
                if method is None:
                    break
                fields = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in properties.headers.items()}
                fields["body"] = body
                # A new deployment routes with the access class only
                # (backend-rabbitmq docs, Upgrading).
                access = "public" if fields.get("archive-policy") == "public" else "private"
                assert method.routing_key == f"mail.{access}.{fields['list-id']}"
                by_list.setdefault(fields["list-id"], []).append(fields)
        return by_list.get(list_id, [])

    try:
        run_site(tmp_path, mails, AMQP_URL, {"prefix": prefix}, read_stored, "rabbitmq", capsys)
    finally:
        channel.queue_delete(f"{prefix}.unrouted")
        channel.exchange_delete(prefix)
        channel.exchange_delete(f"{prefix}.unrouted")
        channel.exchange_delete(f"{prefix}.layout")
        connection.close()


def test_zeromq(tmp_path, mails, capsys):
    """The mq runner hosts the hub; an archive server speaking the hub's
    protocol with pyzmq (backend-zeromq/tests/interop.py's Hub) subscribes
    before anything is posted and acks every delivery."""
    pytest.importorskip("zmq")
    sys.path.insert(0, str(REPO / "backend-zeromq" / "tests"))
    import interop
    import zmq

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    expected = sum(map(archivable, mails[:len(LISTS) * PER_LIST]))
    by_list, failures = {}, []
    welcomed = threading.Event()
    context = zmq.Context()

    def consume():
        hello = {"version": interop.PROTOCOL_VERSION, "name": "mailman-test", "lists": [], "kind": None,
                 "prefetch": 8, "max_attempts": 5, "start": "new"}
        hub = interop.Hub(context, endpoint, hello)
        try:
            hub.welcome()
            welcomed.set()
            for received in range(expected):
                hub.deadline = time.monotonic() + 120
                verb, args = hub.recv(f"DELIVER ({received} of {expected})")
                assert verb == b"DELIVER", verb
                tag, _attempt, frame = args
                _names, fields, body = interop.envelope(frame)
                fields["body"] = body
                by_list.setdefault(fields["list-id"], []).append(fields)
                hub.send(b"ACK", tag)
            hub.send(b"BYE")
        except Exception as error:  # reported by the test thread
            failures.append(repr(error))
        finally:
            hub.socket.close(linger=2000)

    consumer = threading.Thread(target=consume, daemon=True)

    def first():
        consumer.start()
        end = time.monotonic() + 60
        while not welcomed.is_set():
            assert not failures, failures
            assert time.monotonic() < end, "the hub did not welcome the consumer within 60 s"
            welcomed.wait(0.1)

    def done():
        assert not failures, failures
        return not consumer.is_alive()

    try:
        run_site(tmp_path, mails, endpoint, {"hub-dir": str(tmp_path / "hub"), "anonymous": "true"},
                 lambda list_id: by_list.get(list_id, []), "zeromq", capsys, first=first, done=done)
        # The hub's journal keeps each mail: no spool writes it a second time.
        assert not (tmp_path / "var" / "mq-archiver" / "spool").exists()
    finally:
        consumer.join(5)
        context.term()


def test_refused_mail_is_parked_then_retried(tmp_path, mails, capsys):
    """A permanent refusal (an envelope above max-envelope-bytes) parks the
    mail, byte for byte, in var/mq-archiver/parked and logs its hash; once
    the limit is lifted, `python -m mq_archiver.mailman retry-parked` and
    the mq runner archive it. Also the plugin's URLs, computed offline."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    per_list = 10
    sizes = sorted(len(raw) for raw in mails[:len(LISTS) * per_list])
    limit = sizes[len(sizes) // 2]  # about half the mails are refused
    cfg = write_site(tmp_path, REDIS_URL, {"prefix": prefix, "max-envelope-bytes": str(limit)})
    parked = tmp_path / "var" / "mq-archiver" / "parked"

    def stored():
        return {mailman_hash(body): body for fqdn in LISTS
                for _, fields in client.xrange(redis_stream(prefix, fqdn))
                for body in [fields[b"body"]]}

    try:
        assert post_and_archive(tmp_path, cfg, mails, per_list=per_list) == {fqdn: 0 for fqdn in LISTS}
        reference = all_prototype_mails(tmp_path)
        emls = sorted(parked.glob("*.eml")) if parked.exists() else []
        first = stored()
        log = (tmp_path / "var" / "logs" / "mailman.log").read_text()
        with capsys.disabled():
            print(f"\nparked: archived by prototype {len(reference)}, stored {len(first)}, parked {len(emls)}")
        assert emls and first
        assert len(emls) + len(first) == len(reference)
        for eml in emls:
            raw = eml.read_bytes()
            assert reference[mailman_hash(raw)] == raw
            meta = json.loads(eml.with_suffix(".json").read_text())
            assert meta["list_id"] in {f.replace("@", ".") for f in LISTS}
            assert "TooLargeError" in meta["reason"]
            assert f"{eml.name.split('.')[0]} of {meta['list_id']} refused" in log

        # The plugin's URLs, offline, HyperKitty's layout by default.
        sample = next(iter(reference.values()))
        (tmp_path / "sample.eml").write_bytes(sample)
        urls = json.loads(run(sys.executable, str(HERE / "mm_helper.py"), str(cfg), "urls",
                              "pub@example.org", str(tmp_path / "sample.eml")))
        assert urls == {"list_url": f"{BASE}/list/pub@example.org/",
                        "permalink": f"{BASE}/list/pub@example.org/message/"
                                     f"{message_id_hash(email.message_from_bytes(sample))}/"}

        # Lift the limit, retry: every mail is then stored, byte for byte.
        write_site(tmp_path, REDIS_URL, {"prefix": prefix})
        out = run(sys.executable, "-m", "mq_archiver.mailman", "-C", str(cfg), "retry-parked")
        assert out.strip() == f"{len(emls)} parked entries moved back into queue/mq"
        assert not list(parked.glob("*"))
        run_runners(tmp_path, cfg)
        assert stored() == reference
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def test_redis_outage_spools_then_delivers_without_new_traffic(tmp_path, mails, capsys):
    """Redis (a private redis-server) stops once the mq runner is connected;
    the mails are posted and archived meanwhile, so the plugin spools them;
    Redis starts again and, with no new mail, every one arrives,
    byte-identical to prototype's."""
    per_list = 15
    server, prefix, cfg, expected, first = outage_site(tmp_path, mails, per_list)
    log_file = tmp_path / "var" / "logs" / "mailman.log"
    seen = {}

    def done():
        if "restarted" not in seen:
            spooled = log_file.read_text().count(" spooled (envelope ")
            seen["spooled while down"] = spooled
            assert spooled >= 1
            # Every mail went through the archive runner while no broker
            # listened (depth 0: there is none); the spool holds them, and
            # the status command (another process, no lock) says so.
            wait_for(lambda: spool_depth(cfg) == spooled, 60, f"the status showing {spooled} spooled")
            seen["status while down"] = status_line(cfg)
            server.start()
            seen["restarted"] = time.monotonic()
        client = server.client()
        return (sum(client.xlen(redis_stream(prefix, f)) for f in LISTS) >= expected
                and spool_depth(cfg) == 0)

    try:
        assert post_and_archive(tmp_path, cfg, mails, per_list=per_list, first=first, done=done) \
            == {fqdn: 0 for fqdn in LISTS}
        client = server.client()
        stored = {mailman_hash(fields[b"body"]): fields[b"body"] for fqdn in LISTS
                  for _, fields in client.xrange(redis_stream(prefix, fqdn))}
        reference = all_prototype_mails(tmp_path)
        with capsys.disabled():
            print(f"\noutage: archived by prototype {len(reference)}, spooled while down "
                  f"{seen['spooled while down']}, stored after restart {len(stored)}, identical "
                  f"{sum(reference.get(h) == b for h, b in stored.items())}")
            print(f"  status while down: {seen['status while down']}")
            print(f"  status after:      {status_line(cfg)}")
        assert stored == reference
    finally:
        server.stop()


def plugin_status(cfg):
    """`python -m mq_archiver.mailman -C cfg status --json`, parsed."""
    return json.loads(run(sys.executable, "-m", "mq_archiver.mailman", "-C", str(cfg), "status", "--json"))


def spool_depth(cfg):
    """The spool depth the mq runner last reported (None before it did)."""
    runner = plugin_status(cfg)["runner"]
    return None if not runner or not runner.get("spool") else runner["spool"]["depth"]


def status_line(cfg):
    """The status command's spool line, for the report."""
    out = run(sys.executable, "-m", "mq_archiver.mailman", "-C", str(cfg), "status")
    return next(line for line in out.splitlines() if line.startswith("spool"))


def outage_site(tmp_path, mails, per_list):
    """A site archiving to a private redis-server (started here) with a
    short publish timeout, so that mail spools soon while Redis is down.
    Returns the server, the site's prefix and config, how many of the first
    `per_list` mails of each list are archivable, and the `first` of
    post_and_archive that stops Redis once the mq runner's client is
    connected (a second client on the server)."""
    bindings = load_bindings_conftest()
    (tmp_path / "redis").mkdir()
    server = bindings.PrivateRedis(tmp_path / "redis")
    server.start()
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    expected = sum(map(archivable, mails[:len(LISTS) * per_list]))
    cfg = write_site(tmp_path, server.url, {"prefix": prefix, "publish-timeout": "500ms"})

    def first():
        probe = server.client()
        bindings.wait_until(lambda: len(probe.client_list()) >= 2, 60, "the mq runner connected")
        probe.close()
        server.stop()

    return server, prefix, cfg, expected, first


def load_bindings_conftest():
    """The bindings' test helpers (PrivateRedis, wait_until)."""
    spec = importlib.util.spec_from_file_location("bindings_conftest", REPO / "mq-archiver-py" / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def group_members(pgid):
    """The live (not zombie) processes of process group pgid, from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry))
    return members


def wait_for(predicate, timeout, what):
    """Polls predicate every 0.2 s, failing the test after timeout seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


class Master:
    """Mailman's real master (`mailman start`, which forks, calls setsid and
    execs the master; the master forks every runner into its process
    group). Only that group, read from this site's own master lock, is
    ever signalled."""

    def __init__(self, tmp, cfg):
        self.tmp, self.cfg = tmp, cfg
        self.pgids = []

    def mailman(self, *args, **kw):
        return run(str(VENV_BIN / "mailman"), *ROOT, "-C", str(self.cfg), *args, **kw)

    def start(self, *flags):
        """`mailman start` in a session of its own; returns the master's pid,
        which is its process group id."""
        from flufl.lock import Lock, NotLockedError

        lock = Lock(str(self.tmp / "var" / "locks" / "master.lck"))
        with open(self.tmp / "master.out", "ab") as out:
            # The master inherits stdout: a file, or run() would wait for it.
            done = subprocess.run([str(VENV_BIN / "mailman"), *ROOT, "-C", str(self.cfg), "start", *flags],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        assert done.returncode == 0, (self.tmp / "master.out").read_text()
        pid = {}

        def locked():
            try:
                _host, pid["master"], _claim = lock.details
            except (NotLockedError, FileNotFoundError):
                return False
            return pid["master"] not in self.pgids and bool(group_members(pid["master"]))

        wait_for(locked, 60, "the master's lock")
        master = pid["master"]
        assert os.getpgid(master) == master != os.getpgrp(), "the master is not in a process group of its own"
        self.pgids.append(master)
        return master

    def kill(self, pgid):
        """kill -9 of the master's whole process group; waits until it is gone."""
        assert pgid in self.pgids and pgid != os.getpgrp()
        os.killpg(pgid, signal.SIGKILL)
        wait_for(lambda: not group_members(pgid), 30, f"process group {pgid} to die")
        # `start` sees a stale lock only once the master's pid is reaped.
        wait_for(lambda: not Path(f"/proc/{pgid}").exists(), 30, f"the master {pgid} to be reaped")

    def stop(self):
        """`mailman stop`, then kill -9 whatever of our groups is still alive at a deadline."""
        live = [g for g in self.pgids if group_members(g)]
        if live:
            subprocess.run([str(VENV_BIN / "mailman"), *ROOT, "-C", str(self.cfg), "stop"],
                           capture_output=True)
        end = time.monotonic() + 90
        while any(group_members(g) for g in live) and time.monotonic() < end:
            time.sleep(0.2)
        for g in live:
            if group_members(g):
                os.killpg(g, signal.SIGKILL)


class SmtpSink:
    """An SMTP server that discards everything (aiosmtpd's Sink), for the
    master's out runner; started and stopped by pid."""

    def __init__(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink",
                                         "-l", f"127.0.0.1:{self.port}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def listening():
            assert self.process.poll() is None, "the SMTP sink exited"
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 30, "the SMTP sink")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def test_master_killed_with_mail_queued_and_spooled_loses_nothing(tmp_path, mails, capsys):
    """Mailman's real master with every runner; Redis (a private
    redis-server) stops once the mq runner is connected; mails are posted
    with `mailman inject`; once the archive runner has handed over every
    mail, with at least one in `queue/mq` or the plugin's spool (asserted),
    the master's process group is killed -9. Redis starts again, then
    `mailman start --force`: every mail arrives, byte-identical to
    prototype's, with at most one duplicate (the mq runner's entry in
    progress is re-run after a crash)."""
    bindings = load_bindings_conftest()
    (tmp_path / "redis").mkdir()
    server = bindings.PrivateRedis(tmp_path / "redis")
    server.start()
    sink = SmtpSink()
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    per_list = 10
    posted = {fqdn: mails[n * PER_LIST:n * PER_LIST + per_list] for n, fqdn in enumerate(LISTS)}
    expected = sum(archivable(raw) for batch in posted.values() for raw in batch)
    cfg = write_site(tmp_path, server.url, {"prefix": prefix, "publish-timeout": "500ms"}, smtp_port=sink.port)
    queues = tmp_path / "var" / "queue"
    log_file = tmp_path / "var" / "logs" / "mailman.log"
    spool = tmp_path / "var" / "mq-archiver" / "spool"
    helper = [sys.executable, str(HERE / "mm_helper.py"), str(cfg)]
    master = Master(tmp_path, cfg)
    seen = {}

    def entries(name):
        return len(os.listdir(queues / name)) if (queues / name).exists() else 0

    def archived_by_prototype():
        return sum(len(prototype_mails(tmp_path, fqdn)) for fqdn in LISTS)

    def streams():
        client = server.client()
        return [fields for fqdn in LISTS
                for _, fields in client.xrange(redis_stream(prefix, fqdn))]

    try:
        for fqdn, policy in LISTS.items():
            run(*helper, "setup", fqdn, policy)
        first = master.start()
        probe = server.client()
        wait_for(lambda: len(probe.client_list()) >= 2, 120, "the mq runner connected to Redis")
        probe.close()
        server.stop()

        started = time.monotonic()
        for fqdn, batch in posted.items():
            for i, raw in enumerate(batch):
                eml = tmp_path / f"post-{fqdn}-{i:02}.eml"
                eml.write_bytes(raw)
                master.mailman("inject", "-f", str(eml), fqdn)
        seen["seconds per inject"] = (time.monotonic() - started) / sum(map(len, posted.values()))

        def handed_over():
            seen["spooled"] = log_file.read_text().count(" spooled (envelope ") if log_file.exists() else 0
            seen["queue/mq"] = entries("mq")
            return (archived_by_prototype() == expected
                    and entries("in") + entries("pipeline") + entries("archive") == 0)

        wait_for(handed_over, 300, "the archive runner to hand every mail over")
        seen["group"] = len(group_members(first))
        seen["spool files"] = sum(1 for p in spool.rglob("*") if p.is_file()) if spool.exists() else 0
        # Redis is down: every mail the archive runner handed over is in queue/mq or the spool.
        assert seen["queue/mq"] + seen["spooled"] >= 1, f"nothing in queue/mq or the spool before the kill: {seen}"
        assert seen["spooled"] == 0 or seen["spool files"] > 0, seen
        master.kill(first)

        server.start()
        master.start("--force")
        # No assertion at the deadline: the counts below say what is missing.
        end = time.monotonic() + 180
        while time.monotonic() < end and not (
                len({mailman_hash(f[b"body"]) for f in streams()}) >= expected and entries("mq") == 0):
            time.sleep(0.2)
        held = {fqdn: int(run(*helper, "held", fqdn).strip()) for fqdn in LISTS}
        master.stop()
        stored = streams()
        by_hash = {mailman_hash(f[b"body"]): f[b"body"] for f in stored}
        reference = all_prototype_mails(tmp_path)
        with capsys.disabled():
            print(f"\ncrash (master): posted {sum(map(len, posted.values()))} with `mailman inject` "
                  f"({seen['seconds per inject']:.2f} s each), archived by prototype {len(reference)}; "
                  f"at the kill -9 of {seen['group']} processes: {seen['queue/mq']} in queue/mq, "
                  f"{seen['spooled']} spooled ({seen['spool files']} spool files); after `start --force`: "
                  f"stored {len(stored)} ({len(by_hash)} distinct), identical "
                  f"{sum(reference.get(h) == b for h, b in by_hash.items())}")
        assert held == {fqdn: 0 for fqdn in LISTS}
        assert by_hash == reference
        assert len(stored) - len(by_hash) <= 1, "more duplicates than the one re-run entry"
    finally:
        master.stop()
        sink.stop()
        server.stop()
