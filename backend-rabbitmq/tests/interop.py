"""Reads what the Rust library published to RabbitMQ, and publishes a mail
for it, using only pika and docs/wire-format.md: proof that a client in
another language can take part.

usage: interop.py AMQP_URL PREFIX LIST_ID QUEUE
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

import pika

url, prefix, list_id, queue = sys.argv[1:5]
connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()

seen = {}
for _ in range(2):
    method, properties, body = channel.basic_get(queue)
    assert method is not None, "the Rust side published a mail and an event"
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in properties.headers.items()}
    # Any 1.x: a minor version only adds fields, which a reader may ignore.
    assert headers["format-version"].split(".")[0] == "1", headers
    assert headers["list-id"] == list_id, headers
    assert properties.message_id == headers["envelope-id"], (properties.message_id, headers)
    assert properties.delivery_mode == 2
    uuid.UUID(headers["envelope-id"])
    datetime.datetime.fromisoformat(headers["published-at"].replace("Z", "+00:00"))
    seen[headers["kind"]] = (headers, body)
    channel.basic_ack(method.delivery_tag)

mail_headers, mail_body = seen["mail"]
assert mail_headers["content-type"] == "message/rfc822"
event_headers, event_body = seen["event"]
assert event_headers["content-type"] == "application/json"


def uuid7():
    """A UUIDv7 (Python 3.11 has none): 48-bit ms timestamp, version 7, variant 10."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))


body = b"Message-ID: <python-interop@example.org>\r\nSubject: from Python\r\n\r\nFrom Python, with love.\r\n"
envelope_id = uuid7()
now = datetime.datetime.now(datetime.timezone.utc)
channel.confirm_delivery()
# A version 1.0 envelope, as an older list server writes it: no list-address.
channel.basic_publish(
    exchange=prefix,
    routing_key=f"mail.public.{list_id}",  # <kind>.<access class>.<list-id>
    body=body,
    mandatory=True,
    properties=pika.BasicProperties(
        content_type="message/rfc822",
        message_id=envelope_id,
        delivery_mode=2,
        type="mail",
        timestamp=int(now.timestamp()),
        headers={
            "format-version": "1",
            "envelope-id": envelope_id,
            "kind": "mail",
            "list-id": list_id,
            "published-at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "content-type": "message/rfc822",
            "message-id-hash": base64.b32encode(hashlib.sha1(b"python-interop@example.org").digest()).decode(),
            "archive-policy": "public",
        },
    ),
)
connection.close()
print(json.dumps({
    "mail": {
        "envelope_id": mail_headers["envelope-id"],
        "message_id_hash": mail_headers["message-id-hash"],
        "list_address": mail_headers.get("list-address"),
        "body_sha256": hashlib.sha256(mail_body).hexdigest(),
    },
    "event": {
        "envelope_id": event_headers["envelope-id"],
        "list_address": event_headers.get("list-address"),
        "archive_policy": event_headers.get("archive-policy"),
        "event_type": event_headers.get("event-type"),
        "json": json.loads(event_body),
    },
    "published": {"envelope_id": envelope_id, "body_sha256": hashlib.sha256(body).hexdigest()},
}))
