"""A raw peer logged in to the hub as a restricted principal, speaking the
wire protocol with pyzmq alone (the Hub of interop.py): it first reads its
own list, then tries, on the same connection, everything its grant does not
allow, and prints what the hub answered to each attempt; last it tries the
live tail.

usage: grants.py CONFIG

CONFIG is a JSON object: endpoint, tail (endpoints), user, password (its
ZAP PLAIN login), name and lists (its own subscriber name and selection,
read from the beginning of the journal), refused_selections (a list of
[step, lists] its grant does not cover), other (another subscriber's
name), foreign_tag (a tag delivered to another subscriber), shared and
shared_tag (a name it shares with another principal, and a tag delivered
to that principal's connection under it).

Prints one JSON object per line: {"step": "read its own list", "verb":
"DELIVER", "envelope-id", "body_hex"} first (its first delivery), then
{"step", "verb", "reason"} for each attempt (verb `none` if the hub
answered nothing within 5 s), then {"step": "tail ready"} once the tail's
handshake succeeded, and last {"step": "tail", "event", "received"}: the
handshake event the tail's monitor reported and, when it succeeded, the
topics and envelope ids of the first TAIL_COUNT envelopes the tail carried
after "tail ready". Exit 0; any surprise or the 30 s deadline: a message on
stderr, exit 1.
"""

import functools
import json
import operator
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from interop import PROTOCOL_VERSION, TIMEOUT, Failure, Hub, delivery, envelope, text

# How long an attempt waits for the hub's answer.
ANSWER_WAIT = 5.0
# How many envelopes the tail reports once it carries them.
TAIL_COUNT = 3


def hello(name, lists):
    return {
        "version": PROTOCOL_VERSION,
        "name": name,
        "lists": lists,
        "kind": None,
        "prefetch": 8,
        "max_attempts": 5,
        "start": "beginning",
    }


def report(step, verb, args):
    reason = args[0].decode("utf-8", "replace") if args else ""
    print(json.dumps({"step": step, "verb": verb.decode("ascii", "replace"), "reason": reason}), flush=True)


def attempt(hub, step, *frames):
    """Sends one message and reports the hub's answer to it, or `none`
    when no answer but PINGs came within ANSWER_WAIT seconds (a hub that
    did what was asked answers a settlement with nothing)."""
    hub.send(*frames)
    deadline = time.monotonic() + ANSWER_WAIT
    while (left := deadline - time.monotonic()) > 0:
        if not hub.socket.poll(int(left * 1000) + 1, zmq.POLLIN):
            break
        verb, *args = hub.socket.recv_multipart()
        if verb != b"PING":
            report(step, verb, args)
            return
    report(step, b"none", [])


def settlements(whose, tag):
    """ACK, NACK, REJECT and RELEASE of `tag`, as attempts."""
    return [
        (f"ACK of {whose}", b"ACK", tag),
        (f"NACK of {whose}", b"NACK", tag, b"0"),
        (f"REJECT of {whose}", b"REJECT", tag, b"poison"),
        (f"RELEASE of {whose}", b"RELEASE", tag),
    ]


HANDSHAKE_EVENTS = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: "HANDSHAKE_SUCCEEDED",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "HANDSHAKE_FAILED_AUTH",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "HANDSHAKE_FAILED_PROTOCOL",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "HANDSHAKE_FAILED_NO_DETAIL",
}


def tail(context, config):
    """Connects to the tail with the same login, subscribed to everything,
    and reports the first handshake event its monitor gives and, when the
    tail let it in, what it carries next."""
    sub = context.socket(zmq.SUB)
    sub.linger = 0
    sub.plain_username = config["user"].encode()
    sub.plain_password = config["password"].encode()
    monitor = sub.get_monitor_socket(functools.reduce(operator.or_, HANDSHAKE_EVENTS))
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(config["tail"])
    try:
        if not monitor.poll(int(TIMEOUT * 1000)):
            raise Failure("no handshake event from the tail")
        event = recv_monitor_message(monitor)["event"]
        event = HANDSHAKE_EVENTS.get(event, str(event))
        received = []
        if event == "HANDSHAKE_SUCCEEDED":
            print(json.dumps({"step": "tail ready"}), flush=True)
            deadline = time.monotonic() + TIMEOUT
            while len(received) < TAIL_COUNT:
                left = deadline - time.monotonic()
                if left <= 0 or not sub.poll(int(left * 1000) + 1, zmq.POLLIN):
                    raise Failure(f"the tail carried {len(received)} of {TAIL_COUNT} envelopes within {TIMEOUT:.0f} s")
                frames = sub.recv_multipart()
                if len(frames) != 2:
                    raise Failure(f"a tail message of {len(frames)} frames: want topic, envelope")
                topic, frame = frames
                _names, fields, _body = envelope(frame)
                received.append({
                    "topic": text(topic, "the tail's topic"),
                    "envelope-id": fields.get("envelope-id", ""),
                })
        return event, received
    finally:
        sub.disable_monitor()
        monitor.close()
        sub.close()


def run(context, config):
    own = hello(config["name"], config["lists"])
    hub = Hub(context, config["endpoint"], own, (config["user"], config["password"]))
    try:
        hub.welcome()
        verb, args = hub.recv("the delivery of its own list")
        if verb != b"DELIVER":
            raise Failure(f"expected DELIVER, got {verb[:32]!r}")
        tag, summary = delivery(args)
        hub.send(b"ACK", tag)
        print(json.dumps({
            "step": "read its own list",
            "verb": "DELIVER",
            "envelope-id": summary["fields"].get("envelope-id"),
            "body_hex": summary["body_hex"],
        }), flush=True)

        other = config["other"].encode()
        foreign = str(config["foreign_tag"]).encode()
        attempts = [
            ("hello as another name", b"HELLO", json.dumps(hello(config["other"], [])).encode()),
        ] + [
            (step, b"HELLO", json.dumps(hello(config["name"], lists)).encode())
            for step, lists in config["refused_selections"]
        ] + [
            ("dead letters of another name", b"DEAD-LETTERS", other),
            ("replay of another name", b"REPLAY", other, b"all"),
            ("purge of another name", b"PURGE", other),
            ("unsubscribe of another name", b"UNSUBSCRIBE", other),
        ] + settlements("another subscriber's tag", foreign)
        for step, *frames in attempts:
            attempt(hub, step, *frames)

        # A second connection, under the name it shares with the victim:
        # granted, but the victim's delivery is still not its own.
        shared = Hub(
            context,
            config["endpoint"],
            hello(config["shared"], config["lists"]),
            (config["user"], config["password"]),
        )
        try:
            shared.welcome()
            shared_tag = str(config["shared_tag"]).encode()
            for step, *frames in settlements("a tag delivered to another connection of a shared name", shared_tag):
                attempt(shared, step, *frames)
            shared.send(b"BYE")
        finally:
            shared.socket.close()
        hub.send(b"BYE")
    finally:
        hub.socket.close()
    event, received = tail(context, config)
    print(json.dumps({"step": "tail", "event": event, "received": received}), flush=True)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    config = json.loads(sys.argv[1])
    context = zmq.Context()
    try:
        run(context, config)
        return 0
    except Failure as failure:
        print(f"grants.py: {failure}", file=sys.stderr, flush=True)
        return 1
    finally:
        context.term()


if __name__ == "__main__":
    sys.exit(main())
