"""GNU Mailman 3 archiver plugin: hands every archived mail to archive
servers over Redis, RabbitMQ or ZeroMQ through :class:`mq_archiver.Archiver`.

Two pieces, both named in ``mailman.cfg``::

    [archiver.mq]
    class: mq_archiver.mailman.Archiver
    enable: yes
    configuration: /etc/mailman3/mq-archiver.cfg

    [runner.mq]
    class: mq_archiver.mailman.Runner
    instances: 1

**Which process publishes.** Mailman's archive runner (any number of
slices) calls :meth:`Archiver.archive_message`, which only serialises the
mail and enqueues it, with the list's id, posting address and archive
policy, into the plugin's own Mailman queue ``mq`` (``queue/mq``; Mailman
fsyncs queue files). The one ``[runner.mq]`` process (``instances: 1``,
checked at start) is the only one that opens the native client: one
spool directory (default ``$VAR_DIR/mq-archiver/spool``), one
connection, and for ZeroMQ the hub's bound socket. A spool can be open
in one process only and a hub bound by one process only, so a per-slice
client would need one spool per slice and adoption of orphans after a
slice-count change; one publisher needs neither. A mail survives a crash
either as a queue file (``queue/archive`` or ``queue/mq``) or in the
spool; after a crash Mailman re-runs the entry it was working on, so a
mail may be published twice, the second time with a new envelope id
(archive servers deduplicate by list id and Message-ID-Hash, as
HyperKitty does).

**Errors.** Nothing here raises into Mailman for a transient problem: the
archive runner drops a mail whose archiver raised. When the broker is
away the native client spools (``spool-dir``) and publishes as soon as
it answers, without waiting for new traffic; when the client cannot even
open (broker away at start), the entry stays in ``queue/mq`` and is
retried with a back-off. A permanent refusal (too large, forbidden,
unroutable, not a mail) is logged to ``mailman.archiver`` with the
Message-ID-Hash and the mail is parked in ``$VAR_DIR/mq-archiver/parked``
(``<hash>.<n>.eml`` plus ``.json`` with the list and the reason). After
fixing the cause, ``python -m mq_archiver.mailman -C mailman.cfg
retry-parked`` (or :func:`retry_parked`) moves them back into
``queue/mq``. Mailman's ``shunt`` is not used: ``mailman unshunt`` would
re-run every archiver (prototype would write a duplicate).

**Settings** come from the ``configuration:`` file (the master strips the
runners' environment), an INI file::

    [general]
    url: redis://127.0.0.1:6379
    base: https://lists.example.org/archives
    # Optional, these reproduce HyperKitty's layout:
    # permalink: {base}/list/{list_address}/message/{hash}/
    # list_url: {base}/list/{list_address}/
    # close_within: 30

    [options]
    # Any option of mq_archiver.Archiver.open, e.g.
    prefix: mailman

Templates may use ``{base}``, ``{list_id}``, ``{list_address}``,
``{list_name}``, ``{domain}`` and (permalink only) ``{hash}``, the
Message-ID-Hash. URLs are computed offline; lists with archive policy
``never`` have none. The ``base-url`` option of the native client
defaults to ``{base}/list/{list_id}/``; ``spool-dir`` defaults as above.
"""

import io
import json
import logging
import os
import re
import threading
import time
from base64 import b32encode
from email.generator import BytesGenerator
from email.utils import unquote
from hashlib import sha1

from . import (
    Archiver as NativeArchiver,
    ArchiverError,
    ConfigError,
    SpoolError,
    TransientError,
)

__all__ = ["Archiver", "Runner", "message_bytes", "message_id_hash", "retry_parked"]

log = logging.getLogger("mailman.archiver")

#: The section names this plugin expects: ``[archiver.mq]`` and ``[runner.mq]``.
NAME = "mq"
DEFAULT_PERMALINK = "{base}/list/{list_address}/message/{hash}/"
DEFAULT_LIST_URL = "{base}/list/{list_address}/"


def message_bytes(msg):
    """The mail's bytes exactly as Mailman's ``prototype`` archiver writes
    them to its Maildir: no From-mangling and no header refolding
    (``msg.as_bytes()`` refolds long headers)."""
    buf = io.BytesIO()
    BytesGenerator(buf, mangle_from_=False, maxheaderlen=0).flatten(msg)
    return buf.getvalue()


class _Settings:
    """The plugin's settings, read once per process from the file named by
    ``[archiver.mq] configuration:``."""

    def __init__(self):
        from mailman.config import config
        from mailman.config.config import external_configuration

        section = getattr(config.archiver, NAME)
        parser = external_configuration(section.configuration)
        general = dict(parser.items("general", raw=True)) if parser.has_section("general") else {}
        self.url = general.get("url")
        if not self.url:
            raise ValueError(f"[general] url missing in {section.configuration}")
        self.base = general.get("base", "").rstrip("/")
        self.permalink = general.get("permalink", DEFAULT_PERMALINK)
        self.list_url = general.get("list_url", DEFAULT_LIST_URL)
        self.close_within = float(general.get("close_within", "30"))
        self.options = dict(parser.items("options", raw=True)) if parser.has_section("options") else {}
        self.options.setdefault("base-url", self.base + "/list/{list_id}/")
        home = os.path.join(config.VAR_DIR, "mq-archiver")
        self.options.setdefault("spool-dir", os.path.join(home, "spool"))
        self.parked_dir = general.get("parked_dir", os.path.join(home, "parked"))


def _log_cannot_open(error: ArchiverError, retrying: str) -> None:
    """Logs why the native client could not be opened: a configuration
    error (bad URL or option, e.g. no ``base`` for the permalinks) at
    error level, since retrying cannot fix it until the configuration file
    is corrected and the runner restarted; anything else (the broker away)
    as a warning. The mail stays queued either way."""
    if isinstance(error, ConfigError):
        log.error("mq archiver: the configuration is wrong (%s): fix it and restart the mq runner; %s", error, retrying)
    else:
        log.warning("mq archiver: cannot open the client (%s); %s", error, retrying)


_lock = threading.Lock()
_settings = None
_settings_pid = None


def _get_settings():
    """This process's settings (re-read after a fork)."""
    global _settings, _settings_pid
    with _lock:
        if _settings is None or _settings_pid != os.getpid():
            _settings = _Settings()
            _settings_pid = os.getpid()
        return _settings


def _fields(mlist):
    """What the URL templates may use about a list."""
    return {
        "base": _get_settings().base,
        "list_id": mlist.list_id,
        "list_address": mlist.posting_address,
        "list_name": mlist.list_name,
        "domain": mlist.mail_host,
    }


def message_id_hash(msg):
    """The mail's Message-ID-Hash as HyperKitty computes it (and so as the
    envelopes carry it, docs/wire-format.md), None without a Message-ID.
    Mailman's own ``Message-ID-Hash`` header differs for a folded id (it
    keeps the brackets) or one with inner whitespace, and HyperKitty's
    pages are addressed by this one."""
    value = msg.get("message-id")
    if value is None:
        return None
    mid = unquote(re.sub(r"\s", "", str(value)))[:254]
    return b32encode(sha1(unquote(mid).encode("utf-8")).digest()).decode("ascii")


def _policy(mlist):
    return mlist.archive_policy.name


class Archiver:
    """Mailman's ``IArchiver`` for ``[archiver.mq]``: URLs offline, and
    ``archive_message`` enqueues into ``queue/mq`` for :class:`Runner`.
    Mailman builds instances several times per mail; they hold no state."""

    name = NAME
    is_enabled = False

    def list_url(self, mlist):
        """The list's archive URL from the ``list_url`` template; None for
        archive policy ``never``."""
        if _policy(mlist) == "never":
            return None
        return _get_settings().list_url.format(**_fields(mlist))

    def permalink(self, mlist, msg):
        """The mail's archive URL from the ``permalink`` template; None for
        policy ``never`` or a mail without Message-ID."""
        if _policy(mlist) == "never":
            return None
        hash_ = message_id_hash(msg)
        if hash_ is None:
            return None
        return _get_settings().permalink.format(hash=hash_, **_fields(mlist))

    def archive_message(self, mlist, msg):
        """Serialises the mail as prototype does and enqueues it for the
        ``mq`` runner; never raises (Mailman would drop the mail)."""
        try:
            from mailman.config import config

            raw = message_bytes(msg)
            config.switchboards[NAME].enqueue(
                msg,
                listid=mlist.list_id,
                mq_list_address=mlist.posting_address,
                mq_policy=_policy(mlist),
                mq_raw=raw,
            )
            return self.permalink(mlist, msg)
        except Exception:
            log.exception(
                "mq archiver: could not enqueue %s of %s (is [runner.mq] configured?)",
                msg.get("message-id-hash", "n/a"),
                mlist.list_id,
            )
            return None


_client = None
_client_pid = None


def _get_client():
    """This process's one native client (opened on first use; only the
    ``mq`` runner calls this)."""
    global _client, _client_pid
    with _lock:
        if _client is not None and _client_pid == os.getpid():
            return _client
    settings = _get_settings()
    client = NativeArchiver.open(settings.url, settings.options)
    with _lock:
        _client, _client_pid = client, os.getpid()
    return client


def _park(raw, msgdata, reason):
    """Keeps a permanently refused mail where an operator sees it."""
    settings = _get_settings()
    os.makedirs(settings.parked_dir, exist_ok=True)
    hash_ = msgdata.get("mq_hash") or "no-hash"
    n = 0
    while os.path.exists(os.path.join(settings.parked_dir, f"{hash_}.{n}.eml")):
        n += 1
    base = os.path.join(settings.parked_dir, f"{hash_}.{n}")
    with open(base + ".eml.tmp", "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    meta = {
        "list_id": msgdata["listid"],
        "list_address": msgdata.get("mq_list_address"),
        "archive_policy": msgdata.get("mq_policy"),
        "reason": reason,
        "at": time.time(),
    }
    with open(base + ".json", "w") as f:
        json.dump(meta, f)
    os.replace(base + ".eml.tmp", base + ".eml")
    return base + ".eml"


def retry_parked():
    """Moves every parked mail back into ``queue/mq`` (Mailman must be
    initialised); returns how many. Run it after fixing the cause."""
    from email import message_from_bytes

    from mailman.config import config
    from mailman.email.message import Message

    settings = _get_settings()
    if not os.path.isdir(settings.parked_dir):
        return 0
    moved = 0
    for name in sorted(os.listdir(settings.parked_dir)):
        if not name.endswith(".eml"):
            continue
        base = os.path.join(settings.parked_dir, name[: -len(".eml")])
        with open(base + ".eml", "rb") as f:
            raw = f.read()
        with open(base + ".json") as f:
            meta = json.load(f)
        config.switchboards[NAME].enqueue(
            message_from_bytes(raw, Message),
            listid=meta["list_id"],
            mq_list_address=meta["list_address"],
            mq_policy=meta["archive_policy"],
            mq_raw=raw,
        )
        os.remove(base + ".eml")
        os.remove(base + ".json")
        moved += 1
    return moved


def _runner_base():
    from mailman.core.runner import Runner as MailmanRunner

    return MailmanRunner


class Runner(_runner_base()):
    """The ``[runner.mq]`` runner: the one process that publishes, through
    one native client and one spool. Keeps an entry queued (with a
    back-off) while the client cannot open; parks permanent refusals."""

    #: Seconds to wait before the next attempt to open the client, doubled
    #: up to :attr:`MAX_BACKOFF` while it fails.
    MIN_BACKOFF = 0.5
    MAX_BACKOFF = 30.0

    def __init__(self, name, slice=None):
        super().__init__(name, slice)
        from mailman.config import config

        instances = int(getattr(config, "runner." + name).instances)
        if instances != 1:
            raise ValueError(f"[runner.{name}] instances must be 1 (one spool, one hub), not {instances}")
        self._backoff = self.MIN_BACKOFF
        # Open now, not at the first mail: a ZeroMQ hub is then up for
        # archive servers to subscribe before anything is published, and
        # a spool left by an earlier run starts draining at once.
        try:
            _get_client()
        except ArchiverError as error:
            _log_cannot_open(error, "retrying with the next mail")

    def _dispose(self, mlist, msg, msgdata):
        raw = msgdata.get("mq_raw")
        if raw is None:
            raw = message_bytes(msg)
        msgdata["mq_hash"] = message_id_hash(msg)
        try:
            client = _get_client()
        except ArchiverError as error:
            _log_cannot_open(error, f"retrying in {self._backoff:.1f} s")
            time.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, self.MAX_BACKOFF)
            return True
        self._backoff = self.MIN_BACKOFF
        try:
            receipt = client.archive_message(
                msgdata["listid"], msgdata.get("mq_list_address"), msgdata["mq_policy"], raw
            )
        except (TransientError, SpoolError) as error:
            log.warning("mq archiver: %s not taken now (%s); kept in queue/mq", msgdata["mq_hash"], error)
            time.sleep(self.MIN_BACKOFF)
            return True
        except ArchiverError as error:
            path = _park(raw, msgdata, f"{type(error).__name__}: {error}")
            log.error(
                "mq archiver: %s of %s refused (%s: %s); parked as %s",
                msgdata["mq_hash"], msgdata["listid"], type(error).__name__, error, path,
            )
            return False
        log.info(
            "mq archiver: %s of %s %s (envelope %s)",
            receipt.message_id_hash, msgdata["listid"], receipt.outcome, receipt.envelope_id,
        )
        return False

    def _clean_up(self):
        """Gives the spool ``close_within`` seconds to drain, then closes."""
        global _client
        with _lock:
            client, _client = _client, None
        if client is not None:
            left = client.close(_get_settings().close_within)
            if left is not None and left.depth:
                log.warning("mq archiver: %d envelopes stay in the spool for the next start", left.depth)
        super()._clean_up()


def _main(argv=None):
    """``python -m mq_archiver.mailman -C mailman.cfg retry-parked``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mq_archiver.mailman")
    parser.add_argument("-C", "--config", help="mailman.cfg (default: Mailman's search path)")
    parser.add_argument("command", choices=["retry-parked"])
    args = parser.parse_args(argv)
    from mailman.config import config
    from mailman.core.initialize import initialize

    initialize(args.config)
    moved = retry_parked()
    config.db.commit()
    print(f"{moved} parked mails moved back into queue/{NAME}")


if __name__ == "__main__":
    _main()
