"""A raw redis-py client: runs each attempt as the Redis user it names and
says what Redis answered, so the Rust test can check that Redis itself, not
the library, refuses what a grant does not allow.

usage: acl.py PORT < attempts.json
Reads a JSON list of {"user", "password", "attempt", "command": [args]};
prints one JSON list of {"user", "attempt", "outcome"}, where outcome is
"NOPERM", "OK", or "ERROR <first words of the reply>". One connection per
user, kept for all its attempts (the granted read comes first on it).
"""

import json
import sys

import redis

port = int(sys.argv[1])
attempts = json.load(sys.stdin)
connections = {}
results = []
for attempt in attempts:
    user = attempt["user"]
    if user not in connections:
        connections[user] = redis.Redis(
            host="127.0.0.1", port=port, username=user, password=attempt["password"]
        )
    try:
        connections[user].execute_command(*attempt["command"])
        outcome = "OK"
    except redis.exceptions.NoPermissionError:
        outcome = "NOPERM"
    except redis.exceptions.ResponseError as error:
        text = str(error)
        outcome = "NOPERM" if text.startswith("NOPERM") else "ERROR " + " ".join(text.split()[:6])
    results.append({"user": user, "attempt": attempt["attempt"], "outcome": outcome})
print(json.dumps(results))
