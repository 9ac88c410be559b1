"""List events from a real GNU Mailman 3.3.10 (sqlite, null MTA, in a temp
dir) with the plugin's `[plugin.mq]`: changes made through the `mailman`
CLI and through Mailman's REST API (a REST runner started here on a spare
port) reach Redis as list events, published by the one `mq` runner only
once committed. An archive server built on the library (the examples'
`event-log`, subscribed before the first change) must receive, for each
list, exactly the events of the changes, in order, with the right roles,
addresses, settings and archive policy, and never `moderator_password`;
read raw with redis-py, each must sit in the stream of its class (those
with addresses in the membership streams). Also: a rolled-back subscription gives no event, a
CLI process that exits right after a change still gets its event
published (it only wrote a queue file), and `mailman mq status` shows the
spool non-empty during a broker outage and empty after."""

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import redis
import requests

from test_real_mailman import REPO

from test_real_mailman import (
    AMQP_URL,
    REDIS_URL,
    ROOT,
    VENV_BIN,
    load_bindings_conftest,
    run,
    run_runners,
    wait_for,
    write_site,
)

PLUGIN = """
[plugin.mq]
class: mq_archiver.mailman_plugin.Plugin
enabled: yes
component_package: mq_archiver.mailman_plugin
"""


def rest_cfg(port):
    """A [webservice] section: the REST runner on 127.0.0.1:port."""
    return f"""
[webservice]
hostname: 127.0.0.1
port: {port}
admin_user: restadmin
admin_pass: restpass
workers: 1
"""


def mailman(cfg, *args, stdin=None):
    """One `mailman` CLI call: a process of its own that exits at once."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(__file__))
    done = subprocess.run([str(VENV_BIN / "mailman"), *ROOT, "-C", str(cfg), *args],
                          input=stdin, capture_output=True, text=True, env=env)
    return done


def ok(done):
    assert done.returncode == 0, f"{done.args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def access_class(policy, event_type):
    """The class an event must travel in: membership-class when it holds
    addresses, private when its list is."""
    membership = event_type in ("membership_added", "membership_removed", "address_settings_changed")
    return {(True, False): "public", (False, False): "private",
            (True, True): "members", (False, True): "private-members"}[(policy == "public", membership)]


class RedisWire:
    """Reads every event envelope of the prefix raw (redis-py), with the
    class its stream says (`<p>:stream:<policy>:<event|members>:{list}`).
    Redis keeps each class of a list in a stream of its own, so a
    subscriber gets a list's events in order per class; across classes an
    archive orders them by envelope id (time-ordered), as this test does."""

    url = REDIS_URL
    delivery_order_is_publish_order = False

    def __init__(self, prefix):
        self.prefix = prefix
        self.client = redis.Redis.from_url(REDIS_URL)

    def published(self):
        found = []
        for key in self.client.scan_iter(f"{self.prefix}:stream:*"):
            if self.client.type(key) != b"stream":
                continue
            _, _, policy, content = key.decode().split(":")[:4]
            for _, fields in self.client.xrange(key):
                if fields[b"kind"] != b"event":
                    continue
                found.append({
                    "envelope_id": fields[b"envelope-id"].decode(),
                    "class": {"event": policy, "members": "members" if policy == "public"
                              else "private-members"}[content],
                    "raw": b"".join(fields.values()),
                })
        return found

    def cleanup(self):
        for key in self.client.scan_iter(f"{self.prefix}:*"):
            self.client.delete(key)


class RabbitWire:
    """Reads every event raw (pika) from a queue of the test's bound to
    `event.#` before the first change, with the class the routing key's
    second word says. One queue per subscriber: the event-log gets a
    list's events in the order they were published."""

    url = AMQP_URL
    delivery_order_is_publish_order = True

    def __init__(self, prefix):
        import pika

        self.prefix = prefix
        self.connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(prefix, "topic", durable=True, passive=True)
        self.queue = f"{prefix}.raw-check"
        self.channel.queue_declare(self.queue)
        self.channel.queue_bind(self.queue, prefix, "event.#")
        self.found = []

    def published(self):
        while True:
            method, properties, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.found
            headers = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in properties.headers.items()}
            self.found.append({
                "envelope_id": headers["envelope-id"],
                "class": method.routing_key.split(".")[1],
                "raw": body + "".join(headers.values()).encode(),
            })

    def cleanup(self):
        for queue in (self.queue, f"{self.prefix}.q.event-log", f"{self.prefix}.dead.event-log",
                      f"{self.prefix}.unrouted"):
            self.channel.queue_delete(queue)
        for exchange in (f"{self.prefix}.x.event-log", self.prefix, f"{self.prefix}.unrouted",
                         f"{self.prefix}.layout"):
            self.channel.exchange_delete(exchange)
        self.connection.close()


def summary(item):
    """What the test compares of one event: type, policy, and the fields
    that say what changed (not `at`)."""
    event = item["event"]
    assert event["type"] == item["event_type"]
    out = [event["type"], item["policy"]]
    if "address" in event:
        out += [event["address"], event["role"]]
    if event.get("display_name"):
        out.append(event["display_name"])
    if "changes" in event:
        out.append(event["changes"])
    if "posting_address" in event:
        out.append(event["posting_address"])
    return tuple(json.dumps(x, sort_keys=True) if isinstance(x, dict) else x for x in out)


def event_log_binary():
    """The examples' `event-log` archive server (scripts/test-mailman builds it)."""
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    path = os.path.join(target, "debug", "event-log")
    assert os.path.exists(path), f"{path} missing: cargo build -p archiver-examples --bin event-log"
    return path


class EventLog:
    """`event-log` subscribed to the site's prefix, writing to a file."""

    def __init__(self, tmp, url, prefix):
        self.out = tmp / "events.jsonl"
        self.process = subprocess.Popen(
            [event_log_binary(), "--url", url, "--option", f"prefix={prefix}", "--out", str(self.out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        assert line.strip() == "ready", f"event-log: {line!r} {self.process.stderr.read() if not line else ''}"

    def events(self):
        """What it wrote so far, in the order it received them."""
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        return self.process.stderr.read()


@pytest.mark.parametrize("wire", [RedisWire, RabbitWire], ids=["redis", "rabbitmq"])
def test_cli_and_rest_changes_arrive_as_committed_events_in_order(tmp_path, capsys, wire):
    bindings = load_bindings_conftest()
    port = bindings.free_port()
    prefix = f"mmevents-{uuid.uuid4().hex[:12]}"
    cfg = write_site(tmp_path, wire.url, {"prefix": prefix}, extra_cfg=PLUGIN + rest_cfg(port))
    queue = tmp_path / "var" / "queue" / "mq"
    rest = None
    table = []
    archive = EventLog(tmp_path, wire.url, prefix)
    wire = wire(prefix)
    try:
        # CLI changes while no mq runner runs: each process exits at once,
        # leaving its events in queue/mq.
        ok(mailman(cfg, "create", "ev@example.org"))
        ok(mailman(cfg, "create", "gone@example.org"))
        ok(mailman(cfg, "addmembers", "-W", "-", "ev@example.org",
                   stdin="Ann Example <ann@example.org>\nbob@example.org\n"))
        ok(mailman(cfg, "admins", "-a", "owner1@example.org", "ev@example.org"))
        ok(mailman(cfg, "addmembers", "-W", "-", "gone@example.org", stdin="carl@example.org\n"))
        queued = sorted(os.listdir(queue))
        assert len(queued) == 5, queued
        assert wire.published() == [], "published before the mq runner started"
        table.append(f"after 5 CLI calls that exited: queue/mq holds {len(queued)} entries, the broker nothing")

        # One transaction committed, one rolled back (withlist raising).
        ok(mailman(cfg, "withlist", "-r", "mm_events.subscribe_rolled_back_then_committed",
                   "-l", "ev@example.org"))
        failed = mailman(cfg, "withlist", "-r", "mm_events.subscribe_then_raise", "-l", "ev@example.org")
        assert failed.returncode != 0 and "rolled back on purpose" in failed.stderr, failed
        members = ok(mailman(cfg, "members", "ev@example.org"))
        assert "dave@example.org" in members, members
        assert "erin@example.org" not in members and "frank@example.org" not in members, members

        # The REST API, served by a REST runner of this site.
        rest = subprocess.Popen([str(VENV_BIN / "runner"), "-C", str(cfg), "-r", "rest"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        api = f"http://127.0.0.1:{port}/3.1"
        auth = ("restadmin", "restpass")

        def up():
            assert rest.poll() is None, rest.stderr.read().decode()
            try:
                return requests.get(f"{api}/system/versions", auth=auth, timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_for(up, 60, "the REST runner")
        r = requests.post(f"{api}/members", auth=auth, timeout=30,
                          data={"list_id": "ev.example.org", "subscriber": "mod@example.org",
                                "role": "moderator"})
        assert r.status_code == 201, r.text
        member_url = r.headers["location"]
        r = requests.delete(member_url, auth=auth, timeout=30)
        assert r.status_code == 204, r.text
        r = requests.patch(f"{api}/lists/ev.example.org/config", auth=auth, timeout=30,
                           data={"description": "Events test", "moderator_password": "s3cret-moderator",
                                 "reply_to_address": "replies@example.org"})
        assert r.status_code == 204, r.text
        r = requests.patch(f"{api}/lists/ev.example.org/config", auth=auth, timeout=30,
                           data={"moderator_password": "an0ther-secret"})
        assert r.status_code == 204, r.text
        r = requests.patch(f"{api}/lists/ev.example.org/config", auth=auth, timeout=30,
                           data={"archive_policy": "private"})
        assert r.status_code == 204, r.text

        # A list created, staffed and deleted through the REST API alone.
        r = requests.post(f"{api}/lists", auth=auth, timeout=30, data={"fqdn_listname": "viarest@example.org"})
        assert r.status_code == 201, r.text
        for subscriber, role in (("owner2@example.org", "owner"), ("erik@example.org", "member")):
            r = requests.post(f"{api}/members", auth=auth, timeout=30,
                              data={"list_id": "viarest.example.org", "subscriber": subscriber, "role": role,
                                    "pre_verified": True, "pre_confirmed": True, "pre_approved": True})
            assert r.status_code == 201, r.text
        r = requests.delete(f"{api}/lists/viarest.example.org", auth=auth, timeout=30)
        assert r.status_code == 204, r.text

        # A nonmember's post (held) makes a nonmember membership in the in runner.
        post = tmp_path / "nonmember.eml"
        post.write_text("From: Stranger <stranger@example.org>\nTo: ev@example.org\n"
                        "Subject: hello\nMessage-ID: <nonmember-1@example.org>\n\nhi\n")
        ok(mailman(cfg, "inject", "-f", str(post), "ev@example.org"))
        ok(mailman(cfg, "remove", "gone@example.org"))

        expected = {
            "ev.example.org": [
                ("list_created", "public", "ev@example.org"),
                ("membership_added", "public", "ann@example.org", "member", "Ann Example"),
                ("membership_added", "public", "bob@example.org", "member"),
                ("membership_added", "public", "owner1@example.org", "owner"),
                ("membership_added", "public", "dave@example.org", "member"),
                ("membership_added", "public", "mod@example.org", "moderator"),
                ("membership_removed", "public", "mod@example.org", "moderator"),
                ("settings_changed", "public", json.dumps({"description": "Events test"})),
                ("address_settings_changed", "public", json.dumps({"reply_to_address": "replies@example.org"})),
                ("settings_changed", "private", json.dumps({"archive_policy": "private"})),
                ("membership_added", "private", "stranger@example.org", "nonmember"),
            ],
            "viarest.example.org": [
                ("list_created", "public", "viarest@example.org"),
                ("membership_added", "public", "owner2@example.org", "owner"),
                ("membership_added", "public", "erik@example.org", "member"),
                ("membership_removed", "public", "erik@example.org", "member"),
                ("membership_removed", "public", "owner2@example.org", "owner"),
                ("list_deleted", "public"),
            ],
            "gone.example.org": [
                ("list_created", "public", "gone@example.org"),
                ("membership_added", "public", "carl@example.org", "member"),
                ("membership_removed", "public", "carl@example.org", "member"),
                ("list_deleted", "public"),
            ],
        }
        total = sum(map(len, expected.values()))
        run_runners(tmp_path, cfg, done=lambda: len(archive.events()) >= total)
        wait_for(lambda: len(wire.published()) >= total, 30, "the events on the wire")
        received = archive.events()
        if not wire.delivery_order_is_publish_order:
            received.sort(key=lambda line: line["envelope_id"])
        by_list = {}
        for line in received:
            by_list.setdefault(line["list_id"], []).append(
                {"policy": line["archive_policy"], "event_type": line["event_type"], "event": line["event"]})
        got = {list_id: [summary(item) for item in items] for list_id, items in by_list.items()}
        raw = {item["envelope_id"]: item for item in wire.published()}
        with capsys.disabled():
            print(f"\n{type(wire).__name__}: list events (change -> event the archive server received, in order):")
            for line in table:
                print("  " + line)
            for line in received:
                item = {"policy": line["archive_policy"], "event_type": line["event_type"], "event": line["event"]}
                print(f"  {line['list_id']:18} {raw[line['envelope_id']]['class']:15} {' '.join(summary(item))}")
        assert got == expected
        assert len(received) == total and len(raw) == total
        for line in received:
            # Addresses travel only in membership classes, private lists' in private ones.
            assert raw[line["envelope_id"]]["class"] == access_class(line["archive_policy"], line["event_type"]), line
        everything = b"".join(item["raw"] for item in raw.values()) + archive.out.read_bytes()
        assert b"moderator_password" not in everything
        assert b"s3cret-moderator" not in everything and b"an0ther-secret" not in everything
        assert b"erin@example.org" not in everything and b"frank@example.org" not in everything
        assert not os.listdir(tmp_path / "var" / "queue" / "shunt")
        # The plugin's `mailman mq` subcommand (component_package).
        shown = ok(mailman(cfg, "mq", "status"))
        with capsys.disabled():
            print("  mailman mq status:\n    " + shown.strip().replace("\n", "\n    "))
        assert shown.startswith("queue/mq      depth 0, oldest -"), shown
        assert "parked        0" in shown and "mq runner     NOT RUNNING" in shown, shown
    finally:
        archive.stop()
        if rest is not None and rest.poll() is None:
            rest.terminate()
            rest.wait(timeout=60)
        wire.cleanup()
