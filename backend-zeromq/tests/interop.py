"""An archive server that consumes from the ZeroMQ hub using only pyzmq and
the wire protocol as the Rust hub speaks it (backend-zeromq/src/protocol.rs):
proof that a client in another language can take part.

usage: interop.py ENDPOINT SUBSCRIBER COUNT

Says hello on a DEALER, prints `ready` and the capabilities the hub's
WELCOME gave (one JSON object) once welcomed, then acks COUNT
deliveries, printing one JSON object per line for each:
{"tag", "attempt", "fields" (name to value), "field_names" (in wire order),
"body_sha256", "body_len", "body_hex"}; says goodbye and exits 0. Any
refusal, protocol surprise or the 30 s deadline: a message on stderr, exit 1.
"""

import hashlib
import json
import sys
import time

import zmq

TIMEOUT = 30.0
PROTOCOL_VERSION = 3
CAPABILITIES = {
    "per_list_order": bool,
    "replay_from_start": bool,
    "native_dead_letter": bool,
    "abandoned_redelivery_ms": int,
}


class Failure(Exception):
    """Why the script gives up; printed on stderr."""


def text(frame, what):
    try:
        return frame.decode("utf-8")
    except UnicodeDecodeError:
        raise Failure(f"{what} is not UTF-8: {frame[:64]!r}") from None


def decimal(frame, what):
    value = text(frame, what)
    if not (value.isascii() and value.isdigit()):
        raise Failure(f"{what} is not a decimal number: {value!r}")
    return int(value)


class Hub:
    """One DEALER connection to the hub, with heartbeats and a deadline;
    ZAP PLAIN credentials (user, password) when given."""

    def __init__(self, context, endpoint, hello, credentials=None):
        self.endpoint = endpoint
        self.hello = hello
        self.socket = context.socket(zmq.DEALER)
        # Enough for the last ACK and BYE to leave at exit, never a hang.
        self.socket.linger = 2000
        if credentials:
            self.socket.plain_username = credentials[0].encode()
            self.socket.plain_password = credentials[1].encode()
        self.socket.connect(endpoint)
        self.deadline = time.monotonic() + TIMEOUT
        self.heartbeat = 1.0
        self.last_sent = time.monotonic()

    def send(self, *frames):
        self.socket.send_multipart(frames)
        self.last_sent = time.monotonic()

    def say_hello(self):
        self.send(b"HELLO", json.dumps(self.hello).encode())

    def recv(self, waiting_for, ping=True):
        """The next message, PINGs sent and received handled on the way."""
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                raise Failure(f"no {waiting_for} from {self.endpoint} within {TIMEOUT:.0f} s")
            wait = self.deadline - now
            if ping:
                wait = min(wait, max(0.0, self.last_sent + self.heartbeat - now))
            if self.socket.poll(int(wait * 1000) + 1, zmq.POLLIN):
                frames = self.socket.recv_multipart()
                if not frames:
                    continue
                verb, args = frames[0], frames[1:]
                if verb == b"PING":
                    continue
                if verb == b"UNKNOWN":
                    # The hub restarted and forgot this connection.
                    self.say_hello()
                    continue
                if verb == b"DENIED":
                    reason = args[0].decode("utf-8", "replace") if args else ""
                    raise Failure(f"the hub at {self.endpoint} denied the hello: {reason}")
                if verb == b"ERROR":
                    reason = args[0].decode("utf-8", "replace") if args else ""
                    raise Failure(f"the hub refused a message of ours as malformed: {reason}")
                if verb == b"GONE":
                    raise Failure("the hub deleted the subscription (GONE)")
                return verb, args
            if ping and time.monotonic() >= self.last_sent + self.heartbeat:
                self.send(b"PING")

    def welcome(self):
        self.say_hello()
        verb, args = self.recv("WELCOME", ping=False)
        if verb != b"WELCOME":
            raise Failure(f"expected WELCOME, got {verb[:32]!r}")
        settings = json.loads(args[0]) if args else {}
        if "heartbeat_ms" in settings:
            self.heartbeat = min(self.heartbeat, settings["heartbeat_ms"] / 1000)
        capabilities = settings.get("capabilities")
        if not isinstance(capabilities, dict):
            raise Failure(f"WELCOME without capabilities: {settings}")
        for key, kind in CAPABILITIES.items():
            value = capabilities.get(key)
            if type(value) is not kind:
                raise Failure(f"WELCOME capability {key}={value!r} is not a {kind.__name__}")
        return capabilities


def envelope(frame):
    """An envelope frame (DELIVER's last, the tail's second), in the wire
    format's one-byte-string form: `name: value` lines, an empty line, then
    the body untouched. Returns the field names in wire order, the fields
    (name to value) and the body."""
    head, blank, body = frame.partition(b"\n\n")
    if not blank:
        raise Failure(f"an envelope frame without the empty line after its fields: {frame[:64]!r}")
    names, values = [], []
    for line in text(head, "the envelope's fields").split("\n"):
        name, colon, value = line.partition(": ")
        if not colon:
            raise Failure(f"an envelope field line without \": \": {line[:64]!r}")
        names.append(name)
        values.append(value)
    if len(set(names)) != len(names):
        raise Failure(f"an envelope repeats a field: {names}")
    return names, dict(zip(names, values)), body


def delivery(args):
    """A DELIVER's frames after the command, checked and summed up."""
    if len(args) != 3:
        raise Failure(f"DELIVER with {len(args)} frames: want tag, attempt, envelope")
    tag, attempt, frame = args
    names, fields, body = envelope(frame)
    return tag, {
        "tag": decimal(tag, "the tag"),
        "attempt": decimal(attempt, "the attempt"),
        "fields": fields,
        "field_names": names,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "body_len": len(body),
        "body_hex": body.hex(),
    }


def consume(hub, count):
    capabilities = hub.welcome()
    print("ready", json.dumps(capabilities, sort_keys=True), flush=True)
    for received in range(count):
        verb, args = hub.recv(f"DELIVER ({received} of {count} received)")
        if verb != b"DELIVER":
            raise Failure(f"expected DELIVER, got {verb[:32]!r}")
        tag, summary = delivery(args)
        hub.send(b"ACK", tag)
        print(json.dumps(summary), flush=True)
    hub.send(b"BYE")


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hello = {
        "version": PROTOCOL_VERSION,
        "name": name,
        "lists": [],
        "kind": None,
        "prefetch": 8,
        "max_attempts": 5,
        "start": "new",
    }
    context = zmq.Context()
    hub = Hub(context, endpoint, hello)
    try:
        consume(hub, count)
        return 0
    except Failure as failure:
        print(f"interop.py: {failure}", file=sys.stderr, flush=True)
        hub.socket.linger = 0
        return 1
    finally:
        hub.socket.close()
        context.term()


if __name__ == "__main__":
    sys.exit(main())
