"""Reads what the Rust library published to Redis, and publishes a mail for
it, using only redis-py and docs/wire-format.md: proof that a client in
another language can take part.

usage: interop.py REDIS_URL PREFIX LIST_ID
Prints one JSON object: what it read, and the envelope id it published.
"""

import base64
import datetime
import hashlib
import json
import os
import sys
import time
import uuid

import redis

url, prefix, list_id = sys.argv[1:4]
r = redis.Redis.from_url(url)


def stream(content):
    """The key of the public list's stream of that content (mail, event, members)."""
    return f"{prefix}:stream:public:{content}:{{{list_id}}}"


def first_entry(kind, content):
    """The oldest entry of the list's stream of that content, fields decoded."""
    ((entry_id, raw),) = r.xrange(stream(content), count=1)
    fields = {k.decode(): v for k, v in raw.items()}
    text = {k: v.decode() for k, v in fields.items() if k != "body"}
    # Any 1.x: a minor version only adds fields, which a reader may ignore.
    assert text["format-version"].split(".")[0] == "1", text
    assert text["kind"] == kind, text
    assert text["list-id"] == list_id, text
    uuid.UUID(text["envelope-id"])
    datetime.datetime.fromisoformat(text["published-at"].replace("Z", "+00:00"))
    return text, fields["body"]


def uuid7():
    """A UUIDv7 (Python 3.11 has none): 48-bit ms timestamp, version 7, variant 10."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


def message_id_hash(message_id):
    return base64.b32encode(hashlib.sha1(message_id.encode()).digest()).decode()


mail, mail_body = first_entry("mail", "mail")
assert mail["content-type"] == "message/rfc822", mail
# A membership event: its own stream, for those granted member addresses.
event, event_body = first_entry("event", "members")
assert event["content-type"] == "application/json", event

body = b"Message-ID: <python-interop@example.org>\r\nSubject: from Python\r\n\r\nFrom Python, with love.\r\n"
envelope_id = uuid7()
now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
r.sadd(f"{prefix}:lists:public:mail", list_id)
# A version 1.0 envelope, as an older list server writes it: no list-address.
r.xadd(
    stream("mail"),
    {
        "format-version": "1",
        "envelope-id": envelope_id,
        "kind": "mail",
        "list-id": list_id,
        "published-at": now,
        "content-type": "message/rfc822",
        "message-id-hash": message_id_hash("python-interop@example.org"),
        "archive-policy": "public",
        "body": body,
    },
)
print(json.dumps({
    "mail": {
        "envelope_id": mail["envelope-id"],
        "message_id_hash": mail["message-id-hash"],
        "archive_policy": mail["archive-policy"],
        "list_address": mail.get("list-address"),
        "body_sha256": hashlib.sha256(mail_body).hexdigest(),
    },
    "event": {
        "envelope_id": event["envelope-id"],
        "list_address": event.get("list-address"),
        "archive_policy": event.get("archive-policy"),
        "event_type": event.get("event-type"),
        "json": json.loads(event_body),
    },
    "published": {"envelope_id": envelope_id, "body_sha256": hashlib.sha256(body).hexdigest()},
}))
