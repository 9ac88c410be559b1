"""GNU Mailman 3 archiver plugin: hands every archived mail to archive
servers over Redis, RabbitMQ or ZeroMQ through :class:`mq_archiver.Archiver`.

Two pieces, both named in ``mailman.cfg``, and a third for list events
(:mod:`mq_archiver.mailman_plugin`)::

    [archiver.mq]
    class: mq_archiver.mailman.Archiver
    enable: yes
    configuration: /etc/mailman3/mq-archiver.cfg

    [runner.mq]
    class: mq_archiver.mailman.Runner
    instances: 1

    [plugin.mq]
    class: mq_archiver.mailman_plugin.Plugin
    enabled: yes
    component_package: mq_archiver.mailman_plugin

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

List events reach ``queue/mq`` the same way, from whichever process
committed the change (the plugin writes one entry per list and commit,
``mq_events``); the runner publishes them in order with
``archive_event``, and neither mails nor events need their list to still
exist (Mailman's runners shunt an entry of a missing list; this one does
not look the list up).

**Order.** While the client cannot open or a publish is refused for now,
the runner stays on the entry at hand with a back-off instead of handing
it back to Mailman (which would re-queue it behind every later entry), so
mails and events are published in the order they were queued.

**Errors.** Nothing here raises into Mailman for a transient problem: the
archive runner drops a mail whose archiver raised. When the broker is
away the native client spools (``spool-dir``) and publishes as soon as
it answers, without waiting for new traffic; when the client cannot even
open (broker away at start), the entry stays in ``queue/mq`` and is
retried with a back-off. ``python -m mq_archiver.mailman -C mailman.cfg
status`` (or ``mailman mq status``) shows queue/mq, the parked entries
and what the runner last reported (spool depth and age, a stuck record,
its last error) without taking any lock. A permanent refusal (too large, forbidden,
unroutable, not a mail) is logged to ``mailman.archiver`` with the
Message-ID-Hash and the mail is parked in ``$VAR_DIR/mq-archiver/parked``
(``<hash>.<n>.eml`` plus ``.json`` with the list and the reason, both
fsynced and renamed into place); so is a mail on which the native client
panicked (a bug: PyO3's ``PanicException``, a ``BaseException`` that
would kill the runner mid-entry), after which the runner exits 1 for the
master to start a fresh one. After fixing the cause, ``python -m
mq_archiver.mailman -C mailman.cfg retry-parked`` (or
:func:`retry_parked`) moves them back into ``queue/mq``, each on its own:
one whose files are unreadable or corrupt is logged and left in place,
and the command then exits 1. Mailman's ``shunt`` is not used:
``mailman unshunt`` would re-run every archiver (prototype would write a
duplicate). A bad ``permalink``/``list_url`` template or a settings error
(the file unreadable, no ``url`` or ``base``) never raises into Mailman:
each URL call logs it at error level and gives None, ``archive_message``
still enqueues the mail, and the ``mq`` runner logs the configuration
error and keeps the entries queued until restarted with the file fixed.

**Stopping.** A stop signal (``mailman stop``: SIGTERM; SIGINT, SIGUSR1)
never shunts an entry of ``queue/mq`` (Mailman's own handler raises into
whatever the runner does, and a shunted mail already published would be
published again by ``mailman unshunt``): during a back-off the entry stays
in ``queue/mq``, a publish in progress finishes, then the runner stops and
closes the client (the spool gets ``close_within`` seconds to drain).

**Settings** come from the ``configuration:`` file (the master strips the
runners' environment), an INI file::

    [general]
    url: redis://127.0.0.1:6379
    # Required: the archive's address, {base} in the URL templates.
    base: https://lists.example.org/archives
    # Optional, these reproduce HyperKitty's layout:
    # permalink: {base}/list/{list_address}/message/{hash}/
    # list_url: {base}/list/{list_address}/
    # close_within: 30

    [options]
    # Any option of mq_archiver.Archiver.open, e.g.
    prefix: mailman

``url`` and ``base`` are required (:class:`SettingsError`, naming the
file, otherwise). Templates may use ``{base}``, ``{list_id}``, ``{list_address}``,
``{list_name}``, ``{domain}`` and (permalink only) ``{hash}``, the
Message-ID-Hash. URLs are computed offline; lists with archive policy
``never`` have none. The ``base-url`` option of the native client
defaults to ``{base}/list/{list_id}/``; ``spool-dir`` defaults as above,
except for ZeroMQ (``tcp://``, ``ipc://``): the mq runner hosts the hub,
whose journal already keeps each mail on disk before ``publish`` returns,
so a spool would write every mail twice to the same disk (the library
warns when both are configured).
"""

import io
import json
import logging
import os
import pickle
import re
import signal
import sys
import threading
import time
import urllib.parse
from base64 import b32encode
from email.generator import BytesGenerator
from email.utils import unquote
from hashlib import sha1
from typing import NamedTuple

from .mailman_plugin import status
from . import (
    Archiver as NativeArchiver,
    ArchiverError,
    ConfigError,
    PanicException,
    SpoolError,
    TransientError,
)

__all__ = [
    "Archiver",
    "enqueue_mail",
    "Retried",
    "Runner",
    "SettingsError",
    "message_bytes",
    "message_id_hash",
    "retry_parked",
]

log = logging.getLogger("mailman.archiver")
#: Mailman's runner log, where Mailman's own signal handler reports a stop.
rlog = logging.getLogger("mailman.runner")
#: The signals on which Mailman's runners stop (SIGUSR1: the master restarts them).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)

#: The section names this plugin expects: ``[archiver.mq]`` and ``[runner.mq]``.
NAME = "mq"
DEFAULT_PERMALINK = "{base}/list/{list_address}/message/{hash}/"
DEFAULT_LIST_URL = "{base}/list/{list_address}/"
# URL schemes of a ZeroMQ hub, which the mq runner hosts: its journal is
# the spool, so no spool-dir is defaulted for them.
ZEROMQ_SCHEMES = ("tcp", "ipc")


def message_bytes(msg):
    """The mail's bytes exactly as Mailman's ``prototype`` archiver writes
    them to its Maildir: no From-mangling and no header refolding
    (``msg.as_bytes()`` refolds long headers)."""
    buf = io.BytesIO()
    BytesGenerator(buf, mangle_from_=False, maxheaderlen=0).flatten(msg)
    return buf.getvalue()


class SettingsError(ValueError):
    """The plugin's configuration file (``[archiver.mq] configuration:``)
    cannot be read or lacks a required setting; the message names the
    file. Never raised into Mailman: logged at error level."""


class _Settings:
    """The plugin's settings, read once per process from the file named by
    ``[archiver.mq] configuration:``. Raises :class:`SettingsError`."""

    def __init__(self):
        from mailman.config import config
        from mailman.config.config import external_configuration

        path = getattr(config.archiver, NAME).configuration
        try:
            parser = external_configuration(path)
        except Exception as error:
            raise SettingsError(f"cannot read the mq archiver's configuration {path} ({error!r})") from error
        general = dict(parser.items("general", raw=True)) if parser.has_section("general") else {}
        self.url = general.get("url", "").strip()
        if not self.url:
            raise SettingsError(f"[general] url missing in {path}")
        self.base = general.get("base", "").strip().rstrip("/")
        if not self.base:
            raise SettingsError(
                f"[general] base missing in {path} (the archive's address, "
                "e.g. https://lists.example.org/archives: the URLs are built from it)"
            )
        self.permalink = general.get("permalink", DEFAULT_PERMALINK)
        self.list_url = general.get("list_url", DEFAULT_LIST_URL)
        try:
            self.close_within = float(general.get("close_within", "30"))
        except ValueError:
            raise SettingsError(
                f"[general] close_within in {path} is not a number of seconds: {general['close_within']!r}"
            ) from None
        self.options = dict(parser.items("options", raw=True)) if parser.has_section("options") else {}
        self.options.setdefault("base-url", self.base + "/list/{list_id}/")
        home = os.path.join(config.VAR_DIR, "mq-archiver")
        if urllib.parse.urlsplit(self.url).scheme not in ZEROMQ_SCHEMES:
            self.options.setdefault("spool-dir", os.path.join(home, "spool"))
        self.parked_dir = general.get("parked_dir", os.path.join(home, "parked"))
        self.status_file = general.get("status_file", os.path.join(home, "status.json"))


def _log_cannot_open(error: Exception, retrying: str) -> None:
    """Logs why the native client could not be opened: a configuration
    error (the plugin's file unreadable or without ``url`` or ``base``, a
    bad URL or option) at error level, since retrying cannot fix it until
    the configuration file is corrected and the runner restarted; anything
    else (the broker away) as a warning. The mail stays queued either way."""
    if isinstance(error, (ConfigError, SettingsError)):
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


def _log_url_error(what, template, mlist, error):
    """One error-level line for a URL that cannot be computed."""
    if isinstance(error, SettingsError):
        cause = str(error)
    elif isinstance(error, (KeyError, IndexError, ValueError, AttributeError)):
        cause = f"bad [general] {template} template ({type(error).__name__}: {error})"
    else:
        cause = f"{type(error).__name__}: {error}"
    log.error("mq archiver: cannot compute the %s for %s, none given: %s",
              what, getattr(mlist, "list_id", "?"), cause)


def enqueue_mail(mlist, msg):
    """Serialises the mail as prototype does and enqueues it, with the
    list's id, posting address and archive policy, into ``queue/mq`` for
    the ``mq`` runner. Raises what the enqueue raises (no ``[runner.mq]``:
    ``KeyError``; a full disk: ``OSError``)."""
    from mailman.config import config

    config.switchboards[NAME].enqueue(
        msg,
        listid=mlist.list_id,
        mq_list_address=mlist.posting_address,
        mq_policy=_policy(mlist),
        mq_raw=message_bytes(msg),
    )


class Archiver:
    """Mailman's ``IArchiver`` for ``[archiver.mq]``: URLs offline, and
    ``archive_message`` enqueues into ``queue/mq`` for :class:`Runner`.
    Mailman builds instances several times per mail; they hold no state."""

    name = NAME
    is_enabled = False

    def list_url(self, mlist):
        """The list's archive URL from the ``list_url`` template; None for
        archive policy ``never``. Never raises (Mailman's rfc_2369
        handler calls it for the ``List-Archive`` header while handling a
        post): a bad template or settings error is logged at error level
        and gives None."""
        try:
            if _policy(mlist) == "never":
                return None
            return _get_settings().list_url.format(**_fields(mlist))
        except Exception as error:
            _log_url_error("list URL", "list_url", mlist, error)
            return None

    def permalink(self, mlist, msg):
        """The mail's archive URL from the ``permalink`` template; None for
        policy ``never`` or a mail without Message-ID. Never raises
        (Mailman calls it for the ``Archived-At`` header and the footer's
        ``$permalink`` while handling a post): a bad template or settings
        error is logged at error level and gives None."""
        try:
            if _policy(mlist) == "never":
                return None
            hash_ = message_id_hash(msg)
            if hash_ is None:
                return None
            return _get_settings().permalink.format(hash=hash_, **_fields(mlist))
        except Exception as error:
            _log_url_error("permalink", "permalink", mlist, error)
            return None

    def archive_message(self, mlist, msg):
        """Serialises the mail as prototype does and enqueues it for the
        ``mq`` runner; returns its :meth:`permalink`. Never raises (Mailman
        would drop the mail): a failed enqueue is logged and gives None;
        the permalink is computed only once the mail is queued, so a bad
        template or settings error never loses it."""
        try:
            enqueue_mail(mlist, msg)
        except Exception:
            log.exception(
                "mq archiver: could not enqueue %s of %s (is [runner.mq] configured?)",
                msg.get("message-id-hash", "n/a"),
                mlist.list_id,
            )
            return None
        return self.permalink(mlist, msg)


_client = None
_client_pid = None
#: What :meth:`Runner._publish` returns when a stop came first.
_STOPPED = object()


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


def _write_synced(path, data):
    """Writes data to path and fsyncs it (the caller renames it into place)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path):
    """fsyncs a directory, so that renames and removals in it are durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _park(raw, msgdata, reason):
    """Keeps a permanently refused mail where an operator sees it:
    ``<hash>.<n>.json`` (list, policy, reason) then ``<hash>.<n>.eml``,
    each written to a temp file, fsynced and renamed into place, then the
    directory fsynced. The ``.eml`` appears last, so a parked mail always
    has its ``.json``."""
    settings = _get_settings()
    os.makedirs(settings.parked_dir, exist_ok=True)
    hash_ = msgdata.get("mq_hash") or "no-hash"
    n = 0
    while os.path.exists(os.path.join(settings.parked_dir, f"{hash_}.{n}.eml")):
        n += 1
    base = os.path.join(settings.parked_dir, f"{hash_}.{n}")
    meta = {
        "list_id": msgdata["listid"],
        "list_address": msgdata.get("mq_list_address"),
        "archive_policy": msgdata.get("mq_policy"),
        "reason": reason,
        "at": time.time(),
    }
    _write_synced(base + ".eml.tmp", raw)
    _write_synced(base + ".json.tmp", json.dumps(meta).encode("utf-8"))
    os.replace(base + ".json.tmp", base + ".json")
    os.replace(base + ".eml.tmp", base + ".eml")
    _fsync_dir(settings.parked_dir)
    return base + ".eml"


def _park_events(msgdata, events, reason):
    """Keeps list events refused for good (with the list and the reason)
    as ``<list id>.<n>.events.json``, written to a temp file, fsynced,
    renamed into place, the directory fsynced; :func:`retry_parked` puts
    them back."""
    settings = _get_settings()
    os.makedirs(settings.parked_dir, exist_ok=True)
    n = 0
    while os.path.exists(os.path.join(settings.parked_dir, f"{msgdata['listid']}.{n}.events.json")):
        n += 1
    path = os.path.join(settings.parked_dir, f"{msgdata['listid']}.{n}.events.json")
    meta = {
        "list_id": msgdata["listid"],
        "list_address": msgdata.get("mq_list_address"),
        "archive_policy": msgdata.get("mq_policy"),
        "events": list(events),
        "reason": reason,
        "at": time.time(),
    }
    _write_synced(path + ".tmp", json.dumps(meta).encode("utf-8"))
    os.replace(path + ".tmp", path)
    _fsync_dir(settings.parked_dir)
    return path


class Retried(NamedTuple):
    """What :func:`retry_parked` did."""

    #: Parked mails put back into ``queue/mq``.
    moved: int
    #: Parked mails left in the parked directory (unreadable or corrupt
    #: ``.eml`` or ``.json``, or the enqueue failed), plus any that was
    #: enqueued but whose files could not be removed (counted in both).
    failed: int


def retry_parked():
    """Moves every parked mail back into ``queue/mq`` (Mailman must be
    initialised); returns a :class:`Retried` with how many were moved and
    how many failed. Run it after fixing the cause.

    Each parked mail is handled on its own: one that cannot be read
    (``.eml`` or ``.json`` unreadable, corrupt or incomplete) or enqueued
    is logged at error level, counted in ``failed`` and left in place; the
    others are still moved. A mail is enqueued first and its files removed
    after, so a crash in between leaves it both queued and parked and a
    second retry publishes it twice: a duplicate (archive servers
    deduplicate by list id and Message-ID-Hash) is preferred to a loss."""
    from email import message_from_bytes

    from mailman.config import config
    from mailman.email.message import Message

    settings = _get_settings()
    if not os.path.isdir(settings.parked_dir):
        return Retried(0, 0)
    moved = failed = 0
    for name in sorted(os.listdir(settings.parked_dir)):
        if name.endswith(".events.json"):
            if _retry_parked_events(os.path.join(settings.parked_dir, name)):
                moved += 1
            else:
                failed += 1
            continue
        if not name.endswith(".eml"):
            continue
        base = os.path.join(settings.parked_dir, name[: -len(".eml")])
        try:
            with open(base + ".eml", "rb") as f:
                raw = f.read()
            with open(base + ".json", "rb") as f:
                meta = json.load(f)
            if not isinstance(meta, dict):
                raise ValueError(f"not a JSON object: {type(meta).__name__}")
            metadata = {
                "listid": meta["list_id"],
                "mq_list_address": meta.get("list_address"),
                "mq_policy": meta["archive_policy"],
            }
            if not isinstance(metadata["listid"], str) or not isinstance(metadata["mq_policy"], str):
                raise ValueError("list_id and archive_policy must be strings")
            msg = message_from_bytes(raw, Message)
        except Exception as error:
            log.error("mq archiver: cannot retry the parked mail %s (%s: %s); left in place",
                      base, type(error).__name__, error)
            failed += 1
            continue
        try:
            config.switchboards[NAME].enqueue(msg, mq_raw=raw, **metadata)
        except Exception:
            log.exception("mq archiver: could not enqueue the parked mail %s; left in place", base)
            failed += 1
            continue
        moved += 1
        try:
            os.remove(base + ".eml")
            os.remove(base + ".json")
        except OSError as error:
            log.error("mq archiver: the parked mail %s is back in queue/%s but its files could not be "
                      "removed (%s): remove them, or a later retry publishes it again", base, NAME, error)
            failed += 1
    _fsync_dir(settings.parked_dir)
    return Retried(moved, failed)


def _retry_parked_events(path):
    """Puts one parked batch of list events back into ``queue/mq``; False
    (logged, left in place) when it cannot be read or enqueued."""
    from mailman.config import config
    from mailman.email.message import Message

    try:
        with open(path, "rb") as f:
            meta = json.load(f)
        if not isinstance(meta, dict) or not isinstance(meta.get("events"), list):
            raise ValueError("not a JSON object with a list of events")
        metadata = {
            "listid": meta["list_id"],
            "mq_list_address": meta.get("list_address"),
            "mq_policy": meta["archive_policy"],
            "mq_events": meta["events"],
        }
        if not isinstance(metadata["listid"], str) or not isinstance(metadata["mq_policy"], str):
            raise ValueError("list_id and archive_policy must be strings")
    except Exception as error:
        log.error("mq archiver: cannot retry the parked events %s (%s: %s); left in place",
                  path, type(error).__name__, error)
        return False
    try:
        config.switchboards[NAME].enqueue(Message(), **metadata)
    except Exception:
        log.exception("mq archiver: could not enqueue the parked events %s; left in place", path)
        return False
    try:
        os.remove(path)
    except OSError as error:
        log.error("mq archiver: the parked events %s are back in queue/%s but the file could not be "
                  "removed (%s): remove it, or a later retry publishes them again", path, NAME, error)
        return False
    return True


def retried_line(retried):
    """What the ``retry-parked`` commands print."""
    line = f"{retried.moved} parked entries moved back into queue/{NAME}"
    if retried.failed:
        line += (f", {retried.failed} could not be moved (left in {_get_settings().parked_dir};"
                 " the reasons are in Mailman's archiver log)")
    return line


def _runner_base():
    from mailman.core.runner import Runner as MailmanRunner

    return MailmanRunner


class Runner(_runner_base()):
    """The ``[runner.mq]`` runner: the one process that publishes mails and
    list events, through one native client and one spool. Stays on an
    entry (with a back-off) while the client cannot open or the publish
    is refused for now, so order is kept; parks permanent refusals; writes
    the status file (:mod:`.mailman_plugin.status`).

    A stop signal (SIGTERM, SIGINT, SIGUSR1) never shunts an entry.
    Mailman's own handler raises ``RunnerInterrupt`` wherever the runner
    is, and inside an entry Mailman's ``except Exception`` would shunt it:
    a mail not yet published would wait for a human, one already published
    would be published again by ``mailman unshunt``. So while the runner
    works through its queue (:meth:`_one_iteration`) the handler only sets
    the stop flag: a back-off sleep ends at once and the entry stays in
    ``queue/mq``; a publish in progress finishes, the entry is done; then
    Mailman's loop stops (``_short_circuit``) and :meth:`_clean_up` closes
    the client. Between iterations (Mailman's ``_snooze``) the handler is
    Mailman's, raising to cut the sleep short."""

    #: Seconds to wait before the next attempt to open the client, doubled
    #: up to :attr:`MAX_BACKOFF` while it fails.
    MIN_BACKOFF = 0.5
    MAX_BACKOFF = 30.0
    #: How often a back-off sleep looks at the stop flag.
    STOP_POLL = 0.1
    #: True while Mailman's ``_one_iteration`` or our ``_clean_up`` runs
    #: (see :meth:`signal_handler`).
    _defer_stop = False

    def __init__(self, name, slice=None):
        super().__init__(name, slice)
        from mailman.config import config

        instances = int(getattr(config, "runner." + name).instances)
        if instances != 1:
            raise ValueError(f"[runner.{name}] instances must be 1 (one spool, one hub), not {instances}")
        self._backoff = self.MIN_BACKOFF
        self._publish_backoff = self.MIN_BACKOFF
        #: The file base of the entry at hand (:meth:`_remember_entries`).
        self._entry = None
        self._remember_entries()
        #: For ``mailman mq status``: the last error, the entry retried now.
        self._last_error = None
        self._retrying = None
        self._status_written = float("-inf")
        # Open now, not at the first mail: a ZeroMQ hub is then up for
        # archive servers to subscribe before anything is published, and
        # a spool left by an earlier run starts draining at once.
        try:
            _get_client()
        except (ArchiverError, SettingsError) as error:
            _log_cannot_open(error, "retrying with the next mail")
            self._note_error(f"cannot open the client: {error}")

    def signal_handler(self, signum, frame):
        """Mailman's handler, except that a stop signal during
        :meth:`_one_iteration` only asks the runner to stop after the entry
        at hand (no ``RunnerInterrupt``: it would shunt the entry), and one
        during :meth:`_clean_up` lets the client close."""
        if self._defer_stop and signum in STOP_SIGNALS:
            self.stop()
            self.status = signum
            rlog.info("%s runner caught %s.  Stopping after the entry at hand.",
                      self.name, signal.Signals(signum).name)
            return
        super().signal_handler(signum, frame)

    def _one_iteration(self):
        """Mailman's pass over the queue, with stop signals deferred to the
        end of the entry at hand (:meth:`signal_handler`)."""
        self._defer_stop = True
        try:
            return super()._one_iteration()
        finally:
            self._defer_stop = False

    def _pause(self, seconds):
        """Sleeps up to seconds, ending early once a stop was asked for."""
        end = time.monotonic() + seconds
        while not self._stop:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, self.STOP_POLL))

    def _remember_entries(self):
        """Wraps this runner's switchboard ``dequeue`` to remember the
        entry at hand (its file base, ``<time>+<digest>``): Mailman does
        not hand it to ``_dispose``, and keeping an entry in its place
        (:meth:`_keep_in_place`) needs it."""
        switchboard = self.switchboard
        dequeue = switchboard.dequeue

        def remembering_dequeue(filebase):
            self._entry = filebase
            return dequeue(filebase)

        switchboard.dequeue = remembering_dequeue

    def _write_entry(self, suffix, msg, msgdata):
        """Writes the entry at hand as ``<file base><suffix>`` the way
        Mailman's switchboard writes a queue file (message pickle, then the
        metadata without ``_`` keys), to a temp file, fsynced, renamed."""
        from mailman.config import config

        data = {k: v for k, v in msgdata.items() if not k.startswith("_")}
        data["version"] = config.QFILE_SCHEMA_VERSION
        data["_parsemsg"] = False
        path = os.path.join(self.switchboard.queue_directory, self._entry + suffix)
        with open(path + ".tmp", "wb") as f:
            f.write(pickle.dumps(msg, pickle.HIGHEST_PROTOCOL))
            pickle.dump(data, f, pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)

    def _keep_in_place(self, msg, msgdata):
        """Keeps the entry at hand queued under its own file base, so that
        it stays ahead of the entries queued after it (Mailman's
        ``enqueue`` would name it by the time now: the end of the queue).
        Mailman then removes the ``.bak`` of the entry."""
        if self._entry is None:
            self.switchboard.enqueue(msg, msgdata)
        else:
            self._write_entry(".pck", msg, msgdata)

    def _process_one_file(self, msg, msgdata):
        """Mailman's version looks the list up first and shunts the entry
        when it is gone; the mq runner needs no list object (everything is
        in the entry), and a list deleted since must not strand its last
        mails or its ``list_deleted`` event in ``shunt``. An entry kept
        (a stop came first) keeps its place in the queue."""
        if self._dispose(None, msg, msgdata):
            self._keep_in_place(msg, msgdata)

    def _note_error(self, text):
        """Remembers the last error for ``mailman mq status``."""
        self._last_error = {"at": time.time(), "error": text}
        self._write_status(force=True)

    def _write_status(self, force=False):
        """Rewrites the status file (:mod:`.mailman_plugin.status`) at most
        once per interval unless forced; never raises."""
        now = time.monotonic()
        if not force and now - self._status_written < status.WRITE_INTERVAL:
            return
        self._status_written = now
        try:
            with _lock:
                client = _client if _client_pid == os.getpid() else None
            spool = client.spool_status() if client is not None else None
            status.write_status(spool, self._last_error, self._retrying)
        except Exception as error:
            log.warning("mq archiver: cannot write the status file (%s: %s)", type(error).__name__, error)

    def _do_periodic(self):
        """After each entry and each pass: the status file."""
        self._write_status()

    def _publish(self, what, call):
        """``call(client)`` until it succeeds or raises a permanent error;
        returns its result, or :data:`_STOPPED` when a stop was asked for
        first. While the client cannot open or the call fails for now
        (``TransientError``, ``SpoolError``) the runner stays on this entry
        with a back-off: entries behind it wait, so what was queued is
        published in the order it was queued (a kept entry given back to
        Mailman would go to the end of the queue)."""
        while True:
            if self._stop:
                return _STOPPED
            try:
                client = _get_client()
            except (ArchiverError, SettingsError) as error:
                self._retrying = what
                self._note_error(f"cannot open the client: {error}")
                _log_cannot_open(error, f"retrying in {self._backoff:.1f} s")
                self._pause(self._backoff)
                self._backoff = min(self._backoff * 2, self.MAX_BACKOFF)
                continue
            except PanicException as error:
                # Not this entry's fault: it stays queued in its place.
                log.error("mq archiver: the native client panicked while opening (%s); "
                          "stopping the mq runner (the master restarts it)", error, exc_info=True)
                self._note_error(f"the native client panicked while opening: {error}")
                self.stop()
                self.status = 1
                return _STOPPED
            self._backoff = self.MIN_BACKOFF
            try:
                result = call(client)
            except (TransientError, SpoolError) as error:
                self._retrying = what
                self._note_error(f"{what} not taken now: {type(error).__name__}: {error}")
                log.warning("mq archiver: %s not taken now (%s); kept in queue/mq, retrying in %.1f s",
                            what, error, self._publish_backoff)
                self._pause(self._publish_backoff)
                self._publish_backoff = min(self._publish_backoff * 2, self.MAX_BACKOFF)
                continue
            self._publish_backoff = self.MIN_BACKOFF
            self._retrying = None
            return result

    def _panicked(self, error, what, path):
        """A bug in the native client. Not caught, this BaseException would
        pass Mailman's ``except Exception`` and kill the runner mid-entry;
        the master would restart it, re-run the entry from its .bak, panic
        again, and burn max_restarts on one entry. Instead the entry is
        parked with the reason (retry-parked after a fix) and the runner
        stops with status 1: the master starts a fresh process, as the
        client's state is unknown."""
        log.error(
            "mq archiver: the native client panicked on %s (%s); parked as %s; "
            "stopping the mq runner (the master restarts it)",
            what, error, path, exc_info=True,
        )
        self._note_error(f"the native client panicked on {what}: {error}")
        self.stop()
        self.status = 1

    def _dispose(self, mlist, msg, msgdata):
        if "mq_events" in msgdata:
            return self._dispose_events(msg, msgdata)
        raw = msgdata.get("mq_raw")
        if raw is None:
            raw = message_bytes(msg)
        msgdata["mq_hash"] = message_id_hash(msg)
        what = f"{msgdata['mq_hash']} of {msgdata['listid']}"
        try:
            receipt = self._publish(what, lambda client: client.archive_message(
                msgdata["listid"], msgdata.get("mq_list_address"), msgdata["mq_policy"], raw
            ))
        except ArchiverError as error:
            path = _park(raw, msgdata, f"{type(error).__name__}: {error}")
            log.error("mq archiver: %s refused (%s: %s); parked as %s", what, type(error).__name__, error, path)
            self._note_error(f"{what} refused and parked: {type(error).__name__}: {error}")
            return False
        except PanicException as error:
            self._panicked(error, what, _park(raw, msgdata, f"PanicException: {error}"))
            return False
        if receipt is _STOPPED:
            return True
        log.info(
            "mq archiver: %s of %s %s (envelope %s)",
            receipt.message_id_hash, msgdata["listid"], receipt.outcome, receipt.envelope_id,
        )
        return False

    def _dispose_events(self, msg, msgdata):
        """Publishes an entry's list events in order; ``mq_done`` counts
        those already published (written to the entry's ``.bak`` after
        each, so that a crash repeats at most the event in flight), so an
        entry kept on stop or recovered after a crash resumes after them.
        A permanently refused event parks it and the rest of the entry
        (``<list id>.<n>.events.json``); later events of the list do not
        wait for it."""
        events = msgdata["mq_events"]
        listid = msgdata["listid"]
        while msgdata.get("mq_done", 0) < len(events):
            done = msgdata.get("mq_done", 0)
            event = events[done]
            what = f"list event {event.get('type')} of {listid}"
            try:
                receipt = self._publish(what, lambda client: client.archive_event(
                    listid, msgdata.get("mq_list_address"), msgdata["mq_policy"], event
                ))
            except ArchiverError as error:
                path = _park_events(msgdata, events[done:], f"{type(error).__name__}: {error}")
                log.error("mq archiver: %s refused (%s: %s); it and the %d after it parked as %s",
                          what, type(error).__name__, error, len(events) - done - 1, path)
                self._note_error(f"{what} refused and parked: {type(error).__name__}: {error}")
                return False
            except PanicException as error:
                self._panicked(error, what, _park_events(msgdata, events[done:], f"PanicException: {error}"))
                return False
            if receipt is _STOPPED:
                return True
            msgdata["mq_done"] = done + 1
            log.info("mq archiver: %s %s (envelope %s)", what, receipt.outcome, receipt.envelope_id)
            if self._entry is not None and msgdata["mq_done"] < len(events):
                # The progress survives a crash: Mailman recovers the .bak,
                # and at most the one event in flight is published again.
                self._write_entry(".bak", msg, msgdata)
        return False

    def _clean_up(self):
        """Gives the spool ``close_within`` seconds to drain, then closes
        (a second stop signal does not cut this short)."""
        global _client
        self._defer_stop = True
        with _lock:
            client, _client = _client, None
        if client is not None:
            try:
                left = client.close(_get_settings().close_within)
            except (ArchiverError, PanicException) as error:
                log.error("mq archiver: closing the client failed (%s: %s); "
                          "what is spooled stays for the next start", type(error).__name__, error)
                left = None
            if left is not None and left.depth:
                log.warning("mq archiver: %d envelopes stay in the spool for the next start", left.depth)
            try:
                # What stays for the next start, for `mailman mq status`.
                status.write_status(left, self._last_error, None)
            except Exception as error:
                log.warning("mq archiver: cannot write the status file (%s: %s)", type(error).__name__, error)
        super()._clean_up()


def _main(argv=None):
    """``python -m mq_archiver.mailman -C mailman.cfg retry-parked`` (exits
    1 when a parked entry could not be moved; the reasons are logged) or
    ``... status [--json]`` or ``... import-hyperkitty-spool [--spool-dir
    DIR]`` (exits 1 when an entry was left); the same as ``mailman mq
    retry-parked``, ``status`` and ``import-hyperkitty-spool`` with
    ``[plugin.mq]`` configured."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mq_archiver.mailman")
    parser.add_argument("-C", "--config", help="mailman.cfg (default: Mailman's search path)")
    parser.add_argument("command", choices=["retry-parked", "status", "import-hyperkitty-spool"])
    parser.add_argument("--json", action="store_true", help="status: one JSON object")
    parser.add_argument("--spool-dir", help="import-hyperkitty-spool: mailman-hyperkitty's spool "
                        "(default: $ARCHIVE_DIR/hyperkitty/spool)")
    args = parser.parse_args(argv)
    from mailman.config import config
    from mailman.core.initialize import initialize

    initialize(args.config)
    if args.command == "status":
        report = status.read_status()
        print(json.dumps(report, indent=2, sort_keys=True) if args.json else status.format_status(report))
        return
    if args.command == "import-hyperkitty-spool":
        from .mailman_plugin import hyperkitty_spool

        drained = hyperkitty_spool.drain(args.spool_dir)
        config.db.commit()
        print(hyperkitty_spool.drained_line(drained, args.spool_dir))
        if drained.failed:
            sys.exit(1)
        return
    retried = retry_parked()
    config.db.commit()
    print(retried_line(retried))
    if retried.failed:
        sys.exit(1)


if __name__ == "__main__":
    _main()
