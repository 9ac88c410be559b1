"""Raw pyzmq peers of a CURVE hub: each logs in with its own key pair and
the hub's public key, says hello, and reports whether the hub welcomed it
or refused the handshake (the libzmq of pyzmq's wheel has CURVE).

usage: curve.py CONFIG

CONFIG is a JSON object: endpoint, server_key (the hub's public key, Z85),
peers (a list of {label, public, secret, name}: a key pair in Z85 and the
subscriber name of its hello; or {label, mechanism, name} with mechanism
"plain" (a PLAIN user and password instead of keys) or "null" (no
security at all)).

Prints one JSON object per peer: {"label", "outcome"}, the outcome being
the first verb the hub sent (WELCOME, FORBIDDEN, ...) or the handshake
failure its monitor reported (HANDSHAKE_FAILED_AUTH, ...), or "none" if
neither came within 10 s. Exit 0; an error: a message on stderr, exit 1.
"""

import json
import sys
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from grants import hello

WAIT = 10.0

FAILURES = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "HANDSHAKE_FAILED_AUTH",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "HANDSHAKE_FAILED_PROTOCOL",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "HANDSHAKE_FAILED_NO_DETAIL",
}


def config_from_argv(usage):
    """The JSON object of the script's one argument, CONFIG; without exactly
    one argument, prints `usage` on stderr and exits 1."""
    if len(sys.argv) != 2:
        print(usage, file=sys.stderr)
        sys.exit(1)
    return json.loads(sys.argv[1])


def curve_dealer(context, server_key, keys):
    """A DEALER, not yet connected, that logs in to the hub whose public key
    is `server_key` with the key pair `keys` ({public, secret}), all Z85."""
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    socket.curve_serverkey = server_key.encode()
    socket.curve_publickey = keys["public"].encode()
    socket.curve_secretkey = keys["secret"].encode()
    return socket


def attempt(context, endpoint, server_key, peer):
    mechanism = peer.get("mechanism", "curve")
    if mechanism == "curve":
        socket = curve_dealer(context, server_key, peer)
    else:
        socket = context.socket(zmq.DEALER)
        socket.linger = 0
    if mechanism == "plain":
        socket.plain_username = peer["name"].encode()
        socket.plain_password = b"a-password"
    monitor = socket.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_FAILED_AUTH
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )
    socket.connect(endpoint)
    socket.send_multipart([b"HELLO", json.dumps(hello(peer["name"], [])).encode()])
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    deadline = time.monotonic() + WAIT
    outcome = "none"
    while time.monotonic() < deadline:
        ready = dict(poller.poll(int((deadline - time.monotonic()) * 1000) + 1))
        if monitor in ready:
            event = recv_monitor_message(monitor)["event"]
            if event in FAILURES:
                outcome = FAILURES[event]
                break
        if socket in ready:
            verb = socket.recv_multipart()[0]
            if verb != b"PING":
                outcome = verb.decode("ascii", "replace")
                break
    socket.disable_monitor()
    monitor.close()
    socket.close()
    return outcome


def main():
    config = config_from_argv(__doc__)
    context = zmq.Context()
    for peer in config["peers"]:
        outcome = attempt(context, config["endpoint"], config["server_key"], peer)
        print(json.dumps({"label": peer["label"], "outcome": outcome}), flush=True)
    context.term()


if __name__ == "__main__":
    main()
