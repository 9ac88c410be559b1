"""A raw peer logged in to the hub as a restricted principal, speaking the
wire protocol with pyzmq alone (the Hub of interop.py): it first reads its
own list, then tries, on the same connection, everything its grant does not
allow, and prints what the hub answered to each attempt.

usage: grants.py CONFIG

CONFIG is a JSON object: endpoint, tail (endpoints), user, password (its
ZAP PLAIN login), name and list (its own subscriber name and list), other
(another subscriber's name), private_list (a private list it is not
granted), foreign_tag (a tag delivered to another subscriber), shared and
shared_tag (a name it shares with another principal, and a tag delivered
to that principal's connection under it).

Prints one JSON object per line: {"step", "verb", "reason"} for each
attempt (verb `none` if the hub answered nothing within 5 s), {"step": "read its own list", "verb": "DELIVER", "envelope-id",
"body_hex"} first, {"step": "tail", "event"} last (the handshake event the
tail's monitor reported). Exit 0; any surprise or the 30 s deadline: a
message on stderr, exit 1.
"""

import json
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from interop import PROTOCOL_VERSION, TIMEOUT, Failure, Hub, delivery

# How long an attempt waits for the hub's answer.
ANSWER_WAIT = 5.0


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


def tail_event(context, config):
    """Connects to the tail with the same login and returns the name of the
    first handshake event its monitor reports."""
    sub = context.socket(zmq.SUB)
    sub.linger = 0
    sub.plain_username = config["user"].encode()
    sub.plain_password = config["password"].encode()
    monitor = sub.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_SUCCEEDED
        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(config["tail"])
    try:
        if not monitor.poll(int(TIMEOUT * 1000)):
            raise Failure("no handshake event from the tail")
        event = recv_monitor_message(monitor)["event"]
        names = {
            zmq.EVENT_HANDSHAKE_SUCCEEDED: "HANDSHAKE_SUCCEEDED",
            zmq.EVENT_HANDSHAKE_FAILED_AUTH: "HANDSHAKE_FAILED_AUTH",
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "HANDSHAKE_FAILED_PROTOCOL",
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "HANDSHAKE_FAILED_NO_DETAIL",
        }
        return names.get(event, str(event))
    finally:
        sub.disable_monitor()
        monitor.close()
        sub.close()


def run(context, config):
    own = hello(config["name"], [config["list"]])
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
            ("hello selecting every list", b"HELLO", json.dumps(hello(config["name"], ["#"])).encode()),
            (
                "hello selecting a private list not granted",
                b"HELLO",
                json.dumps(hello(config["name"], [config["private_list"]])).encode(),
            ),
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
            hello(config["shared"], [config["list"]]),
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
    print(json.dumps({"step": "tail", "event": tail_event(context, config)}), flush=True)


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
