"""A raw pika client logged in as one restricted archive-server user tries
what its grant does not allow (tests/least_privilege.rs runs it).

Input (stdin, JSON): url, prefix, own queue, a granted binding key, and the
attempts, each {"name", "action", ...}. Every attempt runs on a fresh
channel of the same connection, right after a granted action succeeded on
that channel (a passive declare of its own queue and a bind of a granted
key), so a refusal is the broker refusing that attempt, not the login.
Output: one JSON line per attempt: {"attempt", "granted", "outcome"}, the
outcome being "403" (channel closed with ACCESS_REFUSED), "allowed", or
another error's text.
"""

import json
import sys

import pika


def attempt(channel, prefix, spec):
    action = spec["action"]
    if action == "bind":
        channel.queue_bind(spec["queue"], spec.get("exchange", prefix), routing_key=spec["key"])
    elif action == "declare-dlx":
        channel.queue_declare(
            spec["queue"],
            durable=True,
            arguments={
                "x-dead-letter-exchange": spec["exchange"],
                "x-dead-letter-routing-key": spec["key"],
            },
        )
    elif action == "exchange-bind":
        channel.exchange_bind(spec["destination"], spec["exchange"], routing_key=spec["key"])
    elif action == "gen-bind":
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, prefix, routing_key=spec["key"])
    elif action == "get":
        # auto_ack: a get that succeeds takes the message for good.
        channel.basic_get(spec["queue"], auto_ack=True)
    elif action == "publish":
        channel.confirm_delivery()
        channel.basic_publish(
            spec["exchange"],
            spec["key"],
            b"Message-ID: <forged@example.org>\r\n\r\nforged\r\n",
            pika.BasicProperties(delivery_mode=2, headers={"kind": "mail"}),
            mandatory=False,
        )
    elif action == "delete-exchange":
        channel.exchange_delete(spec["exchange"])
    else:
        raise ValueError(action)


def main():
    task = json.load(sys.stdin)
    connection = pika.BlockingConnection(pika.URLParameters(task["url"]))
    for spec in task["attempts"]:
        channel = connection.channel()
        granted = "no"
        try:
            channel.queue_declare(task["own_queue"], passive=True)
            channel.queue_bind(task["own_queue"], task["prefix"], routing_key=task["granted_key"])
            granted = "ok"
            attempt(channel, task["prefix"], spec)
            outcome = "allowed"
        except pika.exceptions.ChannelClosedByBroker as closed:
            outcome = "403" if closed.reply_code == 403 else f"{closed.reply_code} {closed.reply_text}"
        if channel.is_open:
            channel.close()
        print(json.dumps({"attempt": spec["name"], "granted": granted, "outcome": outcome}), flush=True)
    connection.close()


if __name__ == "__main__":
    main()
