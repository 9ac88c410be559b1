"""A raw pyzmq peer across a key rotation: it logs in to a CURVE hub with
the old key pair of a principal and is welcomed, then waits for a line on
stdin (the test rotates the principal's key meanwhile), then says hello
again on the same connection; then a new connection with the new key pair
and one with the old key pair each say hello.

usage: curve_rotation.py CONFIG

CONFIG is a JSON object: endpoint, server_key (the hub's public key,
Z85), name (the subscriber name of every hello), old and new (each
{public, secret}, Z85).

Prints one JSON object per step: {"step", "outcome"}; the outcome of the
hello on the old connection after the rotation is the list of verbs the
hub sent (PINGs left out) up to its answer to that hello. Exit 0; an
error: a message on stderr, exit 1.
"""

import json
import sys
import time

import zmq

from curve import WAIT, attempt, config_from_argv, curve_dealer
from grants import hello

ANSWERS = {b"WELCOME", b"FORBIDDEN", b"DENIED", b"ERROR"}


def verbs_until_answer(socket):
    """The verbs the hub sends, PINGs left out, up to an answer to a hello."""
    verbs = []
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if not socket.poll(int((deadline - time.monotonic()) * 1000) + 1):
            break
        verb = socket.recv_multipart()[0]
        if verb == b"PING":
            continue
        verbs.append(verb.decode("ascii", "replace"))
        if verb in ANSWERS:
            break
    return verbs


def main():
    config = config_from_argv(__doc__)
    context = zmq.Context()
    old = curve_dealer(context, config["server_key"], config["old"])
    old.connect(config["endpoint"])
    greeting = [b"HELLO", json.dumps(hello(config["name"], [])).encode()]
    old.send_multipart(greeting)
    print(json.dumps({"step": "old key", "outcome": verbs_until_answer(old)}), flush=True)
    sys.stdin.readline()
    old.send_multipart(greeting)
    print(
        json.dumps({"step": "old connection after rotation", "outcome": verbs_until_answer(old)}),
        flush=True,
    )
    for step, keys in [("new key", config["new"]), ("old key again", config["old"])]:
        peer = {"public": keys["public"], "secret": keys["secret"], "name": config["name"]}
        outcome = attempt(context, config["endpoint"], config["server_key"], peer)
        print(json.dumps({"step": step, "outcome": outcome}), flush=True)
    old.close()
    context.term()


if __name__ == "__main__":
    main()
