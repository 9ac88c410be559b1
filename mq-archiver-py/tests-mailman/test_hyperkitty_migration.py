"""Turning mailman-hyperkitty off strands nothing: the real
mailman-hyperkitty 1.2.1, with HyperKitty down (a real HyperKitty 1.3.12
set up but not serving), spools every mail it cannot POST
(`$ARCHIVE_DIR/hyperkitty/spool`); the site then switches to our archiver,
HyperKitty and our hyperkitty-bridge start, and `mailman mq
import-hyperkitty-spool` moves the spool into `queue/mq`. Every spooled
mail reaches Redis byte-identical to what Mailman's prototype archiver
wrote, in its list's stream, and then HyperKitty, once each, on the right
list; the spool is empty."""

import os

from test_real_mailman import (
    LISTS,
    REDIS_URL,
    archivable,
    mailman_hash,
    mails,  # noqa: F401 (the fixture)
    wait_for,
    post_and_archive,
    prototype_mails,
    redis_stream,
    run_runners,
    write_site,
)
from test_list_events import PLUGIN, mailman, ok
from test_hyperkitty_e2e import bridge_stats, hyperkitty_hashes
from hk_helper import KEY, Bridge, HyperKitty

import redis
import uuid

PER_LIST = 10


def hyperkitty_section(tmp, hyperkitty, enable):
    """mailman-hyperkitty's [archiver.hyperkitty], pointing at hyperkitty."""
    (tmp / "hyperkitty.cfg").write_text(
        f"[general]\nbase_url: {hyperkitty.base_url}\napi_key: {KEY}\n")
    return f"""
[archiver.hyperkitty]
class: mailman_hyperkitty.Archiver
enable: {"yes" if enable else "no"}
configuration: {tmp}/hyperkitty.cfg
clobber_date: always
"""


def test_mailman_hyperkitty_spool_is_moved_into_the_queue(tmp_path, mails, capsys):  # noqa: F811
    prefix = f"mmtest-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    hyperkitty = HyperKitty(tmp_path / "hyperkitty")  # set up, not serving: down
    for fqdn, policy in LISTS.items():
        if policy == "private":
            hyperkitty.private_list(fqdn)
    bridge = None
    # Before: mailman-hyperkitty (and prototype) archive, ours is off.
    cfg = write_site(tmp_path, REDIS_URL, {"prefix": prefix},
                     extra_cfg=PLUGIN + hyperkitty_section(tmp_path, hyperkitty, enable=True))
    before = cfg.read_text()
    ours_on = "[archiver.mq]\nclass: mq_archiver.mailman.Archiver\nenable: yes"
    assert ours_on in before
    cfg.write_text(before.replace(ours_on, ours_on.replace("enable: yes", "enable: no")))
    try:
        assert post_and_archive(tmp_path, cfg, mails, per_list=PER_LIST) == {fqdn: 0 for fqdn in LISTS}
        spool = tmp_path / "var" / "archives" / "hyperkitty" / "spool"
        spooled = sorted(os.listdir(spool))
        expected = sum(map(archivable, mails[:len(LISTS) * PER_LIST]))
        assert len(spooled) == expected and all(n.endswith(".pck") for n in spooled), spooled
        assert list(client.scan_iter(f"{prefix}:stream:*:mail:*")) == [], "a mail published before the switch"

        # After: ours on, mailman-hyperkitty off, its spool imported once.
        cfg.write_text(before.replace(hyperkitty_section(tmp_path, hyperkitty, enable=True),
                                      hyperkitty_section(tmp_path, hyperkitty, enable=False)))
        hyperkitty.start()
        bridge = Bridge(tmp_path, REDIS_URL, prefix, hyperkitty)
        wait_for(lambda: "consuming" in bridge.log(), 60, "the bridge subscribed")
        out = ok(mailman(cfg, "mq", "import-hyperkitty-spool"))
        assert out.strip() == f"{expected} mails moved from mailman-hyperkitty's spool into queue/mq", out
        assert os.listdir(spool) == []
        run_runners(tmp_path, cfg)
        stored = {}
        for fqdn in LISTS:
            for _, fields in client.xrange(redis_stream(prefix, fqdn)):
                assert fields[b"list-address"].decode() == fqdn
                stored[mailman_hash(fields[b"body"])] = fields[b"body"]
        reference = {h: raw for fqdn in LISTS for h, raw in prototype_mails(tmp_path, fqdn).items()}
        identical = sum(reference.get(h) == body for h, body in stored.items())
        assert stored == reference
        wait_for(lambda: len(hyperkitty.emails()["emails"]) >= expected, 180, "every mail in HyperKitty")
        got = hyperkitty.emails()["emails"]
        assert bridge.stop() == 0, bridge.log()[-3000:]
        stats = bridge_stats(bridge.log())
        by_list = {}
        for row in got:
            by_list.setdefault(row["list"], []).append(row["message_id_hash"])
        with capsys.disabled():
            print(f"\nmailman-hyperkitty migration: spooled by mailman-hyperkitty {len(spooled)} "
                  f"(HyperKitty down), moved {expected}, in Redis {len(stored)} (identical to "
                  f"prototype's {identical}), in HyperKitty {len(got)}, dead-lettered {stats.get('dead_lettered')}")
        assert {k: sorted(v) for k, v in by_list.items()} == hyperkitty_hashes(tmp_path)
        assert stats["dead_lettered"] == 0, stats
    finally:
        if bridge is not None:
            bridge.stop()
        hyperkitty.stop()
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
