"""End to end into a real HyperKitty 1.3.12: Mailman 3.3.10 with our
plugin publishes to Redis, and our hyperkitty-bridge feeds HyperKitty
(sqlite, started by the test) from its own durable subscription. HyperKitty
is down while the mails are posted and archived; started afterwards, it
gets every mail exactly once, on the right list, with HyperKitty's
Message-ID-Hash of the mail prototype archived, and the private list stays
private (pre-created there, as an operator does). The lists' events reach
the bridge too and are acked. Nothing is dead-lettered."""

import re
import time
import uuid

import redis
import requests

from hk_helper import Bridge, HyperKitty
from test_list_events import PLUGIN
from test_real_mailman import (
    LISTS,
    REDIS_URL,
    archivable,
    mails,  # noqa: F401 (the fixture)
    post_and_archive,
    prototype_mails,
    wait_for,
    write_site,
)
from mq_archiver.mailman import message_id_hash

import email

PER_LIST = 10


def bridge_stats(log):
    """The counters the bridge logs when it stops."""
    found = re.findall(r"(\w+): (\d+)", log[log.rfind("BridgeStats"):]) if "BridgeStats" in log else []
    return {k: int(v) for k, v in found}


def hyperkitty_hashes(tmp):
    """HyperKitty's Message-ID-Hash of each mail prototype archived, by list address."""
    return {fqdn: sorted(message_id_hash(email.message_from_bytes(raw))
                         for raw in prototype_mails(tmp, fqdn).values()) for fqdn in LISTS}


def test_mailman_to_hyperkitty_with_hyperkitty_down_while_posting(tmp_path, mails, capsys):  # noqa: F811
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    hyperkitty = HyperKitty(tmp_path / "hyperkitty")
    private = [fqdn for fqdn, policy in LISTS.items() if policy == "private"]
    for fqdn in private:
        hyperkitty.private_list(fqdn)
    bridge = Bridge(tmp_path, REDIS_URL, prefix, hyperkitty)
    try:
        wait_for(lambda: "consuming" in bridge.log(), 60, "the bridge subscribed")
        # With [plugin.mq]: the lists' events reach the bridge too, which acks them.
        cfg = write_site(tmp_path, REDIS_URL, {"prefix": prefix}, extra_cfg=PLUGIN)
        assert post_and_archive(tmp_path, cfg, mails, per_list=PER_LIST) == {fqdn: 0 for fqdn in LISTS}
        expected = hyperkitty_hashes(tmp_path)
        published = sum(map(len, expected.values()))
        assert published == sum(map(archivable, mails[:len(LISTS) * PER_LIST]))
        wait_for(lambda: "unreachable" in bridge.log().lower(), 60, "the bridge finding HyperKitty down")
        down_at = time.monotonic()
        hyperkitty.start()

        def arrived():
            return len(hyperkitty.emails()["emails"]) >= published

        wait_for(arrived, 180, "every mail in HyperKitty")
        got = hyperkitty.emails()
        assert bridge.stop() == 0, bridge.log()[-3000:]
        stats = bridge_stats(bridge.log())
        by_list = {}
        for row in got["emails"]:
            by_list.setdefault(row["list"], []).append(row["message_id_hash"])
        policies = {row["name"]: row["archive_policy"] for row in got["lists"]}
        with capsys.disabled():
            print(f"\nMailman -> Redis -> hyperkitty-bridge -> HyperKitty (down while posting): "
                  f"published {published}, in HyperKitty {len(got['emails'])}, duplicates "
                  f"{len(got['emails']) - len({r['message_id_hash'] for r in got['emails']})}, "
                  f"dead-lettered {stats.get('dead_lettered')}; bridge {stats}; "
                  f"all in HyperKitty {time.monotonic() - down_at:.1f} s after it started")
        assert {k: sorted(v) for k, v in by_list.items()} == expected
        for fqdn in private:
            assert policies[fqdn] == 1, f"{fqdn} must stay private in HyperKitty (1; 2 is public): {policies}"
        assert stats["dead_lettered"] == 0 and stats["posted"] == published, stats
        assert stats["unreachable_answers"] >= 1, stats
        assert stats["events_acked"] >= len(LISTS), stats  # at least each list's list_created
        public = next(fqdn for fqdn, policy in LISTS.items() if policy == "public")
        page = requests.get(f"{hyperkitty.base_url}list/{public}/message/{expected[public][0]}/", timeout=30)
        assert page.status_code == 200, page.status_code
    finally:
        bridge.stop()
        hyperkitty.stop()
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
