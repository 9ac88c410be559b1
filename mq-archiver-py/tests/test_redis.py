"""Round trips through a real Redis: what the bindings publish is read
back with redis-py from the streams (docs/wire-format.md), byte for byte;
the spool keeps mail while Redis is down; the GIL is released while a
call waits on Redis."""

import datetime
import gc
import json
import threading
import time

import pytest

import mq_archiver
from mq_archiver import Archiver
from conftest import BASE_URL, LIST_ADDRESS, LIST_ID, REDIS_URL, mail, wait_until

# Mails whose bytes a re-serialisation would change: 8-bit bytes that are
# not UTF-8, a NUL, bare LF line ends next to CRLF, trailing blanks, a
# very long unfolded header, a folded one, and an mbox-style From line.
AWKWARD_MAILS = [
    mail("<round.1@example.org>"),
    mail(
        "<round.2@example.org>",
        extra_headers=b"X-Long: " + b"x" * 2000 + b"\r\nX-Folded: a\r\n\tb  \r\n",
        body=b"caf\xe9 \xff\xfe\x00 end  \r\nFrom the start\nbare LF\n\r\n",
    ),
    mail("<round.3@example.org>", body=bytes(range(256)) + b"\r\n"),
]


def stream_key(prefix, access, content):
    """The Redis backend's stream of the list for an access class
    (`public` or `private`) and a content (`mail`, `event`, or `members`
    for membership events): `<prefix>:stream:<class>:<content>:{<list-id>}`."""
    return f"{prefix}:stream:{access}:{content}:{{{LIST_ID}}}"


def entries(client, prefix, access, content):
    """The entries of one of the list's streams, oldest first."""
    return [fields for _, fields in client.xrange(stream_key(prefix, access, content))]


def test_mails_and_events_arrive_byte_for_byte(redis_client, prefix):
    archiver = Archiver.open(REDIS_URL, {"base-url": BASE_URL, "prefix": prefix})
    try:
        receipts = [archiver.archive_message(LIST_ID, LIST_ADDRESS, "private", raw) for raw in AWKWARD_MAILS]
        event = {"type": "membership_added", "address": "ann@example.org", "role": "moderator",
                 "display_name": "Ann Example", "actor": "admin@example.org", "at": "2026-11-24T10:00:00Z"}
        event_receipt = archiver.archive_event(LIST_ID, LIST_ADDRESS, "private", event)
        before = datetime.datetime.now(datetime.timezone.utc)
        archiver.archive_event(LIST_ID, LIST_ADDRESS, "private", {"type": "list_deleted"})
        after = datetime.datetime.now(datetime.timezone.utc)
    finally:
        archiver.close(5)
    assert [r.outcome for r in receipts] == ["published"] * len(AWKWARD_MAILS)
    stored = entries(redis_client, prefix, "private", "mail")
    assert len(stored) == len(AWKWARD_MAILS)
    for raw, receipt, fields in zip(AWKWARD_MAILS, receipts, stored):
        assert fields[b"body"] == raw
        assert fields[b"envelope-id"].decode() == receipt.envelope_id
        assert fields[b"message-id-hash"].decode() == receipt.message_id_hash
        assert fields[b"list-id"].decode() == LIST_ID
        assert fields[b"list-address"].decode() == LIST_ADDRESS
        assert fields[b"archive-policy"] == b"private"
        assert fields[b"content-type"] == b"message/rfc822"
    (event_fields,) = entries(redis_client, prefix, "private", "members")
    (deleted_fields,) = entries(redis_client, prefix, "private", "event")
    assert event_fields[b"envelope-id"].decode() == event_receipt.envelope_id
    assert event_fields[b"event-type"] == b"membership_added"
    assert event_fields[b"archive-policy"] == b"private"
    assert json.loads(event_fields[b"body"]) == {**event, "list_id": LIST_ID}
    deleted = json.loads(deleted_fields[b"body"])
    # `at` defaults to the time of the call; list_id to the list's.
    at = datetime.datetime.fromisoformat(deleted.pop("at").replace("Z", "+00:00"))
    assert before - datetime.timedelta(seconds=1) <= at <= after + datetime.timedelta(seconds=1)
    assert deleted == {"type": "list_deleted", "list_id": LIST_ID}


def test_threads_share_one_archiver(redis_client, prefix):
    archiver = Archiver.open(REDIS_URL, {"base-url": BASE_URL, "prefix": prefix})
    sent = {}
    errors = []

    def post(thread):
        try:
            for n in range(25):
                raw = mail(f"<thread.{thread}.{n}@example.org>", body=f"mail {n} of thread {thread}\r\n".encode())
                sent[archiver.archive_message(LIST_ID, LIST_ADDRESS, "public", raw).envelope_id] = raw
        except Exception as error:  # reported below, with the thread's failure
            errors.append(error)

    threads = [threading.Thread(target=post, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    archiver.close(5)
    assert errors == []
    stored = {f[b"envelope-id"].decode(): f[b"body"] for f in entries(redis_client, prefix, "public", "mail")}
    assert len(sent) == 100
    assert stored == sent


def test_an_archiver_dropped_without_close_lets_go_of_its_spool(redis_client, prefix, tmp_path):
    options = {"base-url": BASE_URL, "prefix": prefix, "spool-dir": str(tmp_path / "spool")}
    archiver = Archiver.open(REDIS_URL, options)
    assert archiver.archive_message(LIST_ID, None, "public", mail()).outcome == "published"
    del archiver
    gc.collect()
    again = Archiver.open(REDIS_URL, options)  # the spool's lock was released
    assert again.spool_status().depth == 0
    again.close(5)


def test_an_envelope_above_the_backends_limit_is_too_large(redis_client, prefix):
    archiver = Archiver.open(REDIS_URL, {"base-url": BASE_URL, "prefix": prefix, "max-envelope-bytes": "100"})
    try:
        with pytest.raises(mq_archiver.TooLargeError):
            archiver.archive_message(LIST_ID, None, "public", mail(body=b"x" * 200))
    finally:
        archiver.close(5)
    assert entries(redis_client, prefix, "public", "mail") == []


def test_the_spool_keeps_mail_while_redis_is_down(private_redis, tmp_path):
    archiver = Archiver.open(
        private_redis.url,
        {"base-url": BASE_URL, "spool-dir": str(tmp_path / "spool"), "publish-timeout": "500ms"},
    )
    try:
        assert archiver.archive_message(LIST_ID, None, "public", AWKWARD_MAILS[0]).outcome == "published"
        private_redis.stop()
        spooled = [archiver.archive_message(LIST_ID, None, "public", raw) for raw in AWKWARD_MAILS[1:]]
        assert [r.outcome for r in spooled] == ["spooled"] * len(spooled)
        status = archiver.spool_status()
        assert status.depth == len(spooled) and status.spooled == len(spooled)
        private_redis.start()
        wait_until(lambda: archiver.spool_status().depth == 0, 60, "the spool to drain")
        assert archiver.spool_status().drained == len(spooled)
    finally:
        archiver.close(5)
    client = private_redis.client()
    stored = [fields for _, fields in client.xrange(stream_key("archiver", "public", "mail"))]
    client.close()
    # Redis restarted empty (no persistence): what it holds came from the spool.
    assert [f[b"body"] for f in stored] == AWKWARD_MAILS[1:]
    assert [f[b"envelope-id"].decode() for f in stored] == [r.envelope_id for r in spooled]


def test_the_gil_is_released_while_a_call_waits(redis_client, prefix):
    # WAIT for a replica this Redis does not have: the publish blocks for
    # the 1 s timeout, then fails as unavailable.
    archiver = Archiver.open(
        REDIS_URL, {"base-url": BASE_URL, "prefix": prefix, "durability": "replicas:1:1s"}
    )
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        start = time.monotonic()
        with pytest.raises(mq_archiver.UnavailableError):
            archiver.archive_message(LIST_ID, None, "public", mail())
        end = time.monotonic()
    finally:
        stop.set()
        ticker.join()
        archiver.close(5)
    assert end - start >= 0.9
    during = [t for t in ticks if start + 0.2 < t < end - 0.2]
    # A thread sleeping 1 ms per tick gets hundreds of ticks in those
    # 0.6 s when the GIL is free, none when the call holds it.
    assert len(during) > 100, f"{len(during)} ticks of another thread during a {end - start:.2f}s call"
