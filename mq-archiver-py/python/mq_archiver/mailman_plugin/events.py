"""List events from Mailman, handed to the ``mq`` runner only once the
change is committed.

Mailman fires its list events (``zope.event``) inside the transaction,
before commit, in whichever process made the change (a CLI command, the
REST runner, the ``in`` runner for a nonmember's first post), and fires
nothing when list settings change. So this module:

- subscribes to the list and membership events and, through an SQLAlchemy
  ``after_update`` hook on ``MailingList``, to changes of the settings
  Mailman's REST API can write (``mailman.rest.listconf.ATTRIBUTES`` with a
  decoder), never ``moderator_password`` (a secret);
- buffers them in the database session (``session.info``), each with the
  list's id, posting address and archive policy as they were then;
- on ``after_commit`` enqueues them into the plugin's Mailman queue
  ``queue/mq`` (one entry per list, events in the order they happened;
  Mailman fsyncs queue files), where the one ``mq`` runner publishes them:
  a short-lived CLI process holds no client and no spool, and exits as
  soon as the queue file is written;
- on ``after_soft_rollback`` drops them: a change that was rolled back
  was never made.

Settings kept in tables of their own (``acceptable_aliases``,
``filter_types``, ``pass_types``, ``filter_extensions``,
``pass_extensions``) are not ``MailingList`` columns, and their changes
give no event.

Order and loss. Events of one list from one process are enqueued in the
order they happened. Two processes committing at once (two REST workers,
the REST runner and a CLI call) may enqueue in the other order than they
committed; each event's ``at`` is the time of the change inside its
transaction, and a change that depends on another (an unsubscription of
a member another transaction subscribed) can only happen after that one
committed, so ordering by ``at`` puts such pairs right. Between the
database's commit and the queue file being written (milliseconds) a
crash loses the events, and a failed write (disk full) is logged at
error level with the list and the event types.

Settings that hold addresses (``ADDRESS_SETTINGS``) travel apart, as an
``address_settings_changed`` event: those addresses are as private as the
roster, so brokers and hubs deliver them only to archive servers granted
membership events. Every event of a list in one transaction is published
with the list's policy at the end of that transaction (a list made
private in the same transaction does not leak what came before); events
of a list whose policy is then ``never`` are not published at all, like
its mail.
"""

import logging
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Dict, List

log = logging.getLogger("mailman.archiver")

#: Where the buffered events of a transaction wait (``Session.info``).
BUFFER_KEY = "mq_archiver_events"

#: Writable settings never published: a secret.
SECRET_SETTINGS = frozenset({"moderator_password"})

#: Writable settings that hold addresses: published as
#: ``address_settings_changed`` (membership-class) instead of
#: ``settings_changed``.
ADDRESS_SETTINGS = frozenset({
    "accept_these_nonmembers",
    "hold_these_nonmembers",
    "reject_these_nonmembers",
    "discard_these_nonmembers",
    "dmarc_addresses",
    "reply_to_address",
})

#: Where a nested transaction's buffer position is kept (``Session.info``).
MARKS_KEY = "mq_archiver_event_marks"

#: Mapped attribute names that differ from the REST API's setting name.
_COLUMN_TO_SETTING = {"_preferred_language": "preferred_language"}


def json_value(value: Any) -> Any:
    """A setting's value as JSON can carry it: an enum by its name, a
    duration in seconds, a time in ISO 8601, bytes as UTF-8, sequences as
    lists; anything else by its ``str``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    code = getattr(value, "code", None)  # a Mailman ILanguage
    return code if isinstance(code, str) else str(value)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _session():
    from mailman.config import config

    return config.db.store


def _buffer(session, mlist, event: Dict[str, Any]) -> None:
    """Keeps the event, with the list as it is now, until the session
    commits."""
    event.setdefault("at", _now())
    session.info.setdefault(BUFFER_KEY, []).append({
        "mlist": mlist,
        "listid": mlist.list_id,
        "list_address": mlist.posting_address,
        "policy": _policy(mlist),
        "event": event,
    })


def _policy(mlist):
    """The list's archive policy's name; None while a new list has none
    yet (Mailman applies the style after ``ListCreatedEvent``)."""
    policy = mlist.archive_policy
    return None if policy is None else policy.name


def _member_address(member):
    address = member.address
    return address.email, getattr(address, "display_name", None) or None


def on_zope_event(event) -> None:
    """``zope.event`` subscriber: buffers list and membership events."""
    from mailman.interfaces.listmanager import ListCreatedEvent, ListDeletingEvent
    from mailman.interfaces.member import SubscriptionEvent, UnsubscriptionEvent

    try:
        if isinstance(event, ListCreatedEvent):
            mlist = event.mailing_list
            _buffer(_session(), mlist, {"type": "list_created", "posting_address": mlist.posting_address})
        elif isinstance(event, ListDeletingEvent):
            # ListDeletedEvent has only the name: the list is captured now.
            _buffer(_session(), event.mailing_list, {"type": "list_deleted"})
        elif isinstance(event, SubscriptionEvent):
            email, name = _member_address(event.member)
            added = {"type": "membership_added", "address": email, "role": event.member.role.name}
            if name:
                added["display_name"] = name
            _buffer(_session(), event.mlist, added)
        elif isinstance(event, UnsubscriptionEvent):
            email, _ = _member_address(event.member)
            _buffer(_session(), event.mlist,
                    {"type": "membership_removed", "address": email, "role": event.member.role.name})
    except Exception:
        # Never break Mailman's own change for an archive event.
        log.exception("mq archiver: could not record the list event %s", type(event).__name__)


def writable_settings() -> frozenset:
    """The settings Mailman's REST API can write, minus the secret ones."""
    from mailman.rest.listconf import ATTRIBUTES

    return frozenset(
        name for name, getter_setter in ATTRIBUTES.items() if getter_setter.decoder is not None
    ) - SECRET_SETTINGS


def settings_events(target, writable) -> List[Dict[str, Any]]:
    """The settings events of one flushed ``MailingList`` update: the
    writable settings whose value changed, addresses apart."""
    from sqlalchemy import inspect

    plain, addresses = {}, {}
    for attr in inspect(target).attrs:
        setting = _COLUMN_TO_SETTING.get(attr.key, attr.key)
        if setting not in writable:
            continue
        history = attr.history
        if not history.has_changes() or not history.added:
            continue
        new = history.added[0]
        if history.deleted and history.deleted[0] == new:
            continue
        (addresses if setting in ADDRESS_SETTINGS else plain)[setting] = json_value(new)
    events = []
    if plain:
        events.append({"type": "settings_changed", "changes": plain})
    if addresses:
        events.append({"type": "address_settings_changed", "changes": addresses})
    return events


def make_after_update(writable):
    """The ``MailingList`` ``after_update`` mapper hook (it runs at flush,
    when the attributes' history still holds the change)."""

    def after_update(mapper, connection, target):
        try:
            from sqlalchemy.orm import object_session

            session = object_session(target)
            if session is None:
                return
            for event in settings_events(target, writable):
                _buffer(session, target, event)
        except Exception:
            log.exception("mq archiver: could not record a settings change")

    return after_update


def after_transaction_create(session, transaction) -> None:
    """Marks where a savepoint (``begin_nested``) starts in the buffer,
    so that rolling it back drops only its own events."""
    if transaction.nested:
        session.info.setdefault(MARKS_KEY, {})[id(transaction)] = len(session.info.get(BUFFER_KEY, ()))


def after_transaction_end(session, transaction) -> None:
    """When the outermost transaction ends: forgets the savepoints' marks,
    and drops the events no commit took (``Session.close()`` with the
    transaction open fires no rollback event), drops them."""
    if transaction.parent is None and not transaction.nested:
        # (SQLAlchemy ends a savepoint before its after_soft_rollback, so
        # the marks are kept until the outermost transaction ends.)
        session.info.pop(MARKS_KEY, None)
        dropped = session.info.pop(BUFFER_KEY, None)
        if dropped:
            log.info("mq archiver: %d list events dropped with a transaction that did not commit", len(dropped))


def before_commit(session) -> None:
    """Reads each buffered list's policy and posting address again just
    before the commit: a list's style is applied after Mailman fires
    ``ListCreatedEvent``, and settings set on a new list fire no update.
    A list deleted in this transaction keeps what was captured."""
    if session.in_nested_transaction():
        return
    for item in session.info.get(BUFFER_KEY, ()):
        mlist = item["mlist"]
        try:
            from sqlalchemy import inspect

            if inspect(mlist).deleted or mlist in session.deleted:
                continue
            item["policy"] = _policy(mlist) or item["policy"]
            item["list_address"] = mlist.posting_address
        except Exception:
            continue


def after_commit(session) -> None:
    """Hands the committed transaction's events to the ``mq`` runner:
    one ``queue/mq`` entry per list, its events in order, all with the
    list's policy at the end of the transaction. Never raises (the
    change is committed already): a failed enqueue is logged with the
    list ids and event types."""
    if session.in_nested_transaction():
        return  # a savepoint: the outer transaction may still roll back
    buffered = session.info.pop(BUFFER_KEY, None)
    if not buffered:
        return
    by_list: Dict[str, List[Dict[str, Any]]] = {}
    for item in buffered:
        by_list.setdefault(item["listid"], []).append(item)
    try:
        from mailman.config import config
        from mailman.email.message import Message

        from ..mailman import NAME

        switchboard = config.switchboards[NAME]
    except Exception:
        log.exception("mq archiver: list events of %s lost: no queue/mq (is [runner.mq] configured?)",
                      ", ".join(by_list))
        return
    for listid, items in by_list.items():
        last = items[-1]
        try:
            switchboard.enqueue(
                Message(),
                listid=listid,
                mq_list_address=last["list_address"],
                # A policy still unknown errs on the side of private.
                mq_policy=last["policy"] or "private",
                mq_events=[item["event"] for item in items],
            )
        except Exception:
            log.exception("mq archiver: could not enqueue the list events of %s (%s)", listid,
                          ", ".join(item["event"]["type"] for item in items))


def after_soft_rollback(session, previous_transaction) -> None:
    """Drops the buffered events: their change was rolled back (only a
    savepoint's own, when a savepoint was)."""
    if previous_transaction.nested:
        mark = session.info.get(MARKS_KEY, {}).get(id(previous_transaction))
        buffered = session.info.get(BUFFER_KEY)
        if mark is not None and buffered is not None:
            del buffered[mark:]
        return
    dropped = session.info.pop(BUFFER_KEY, None)
    if dropped:
        log.info("mq archiver: %d list events dropped with a rolled-back transaction", len(dropped))


_installed = False


def install() -> None:
    """Subscribes the hooks once per process (the plugin's ``pre_hook``)."""
    global _installed
    if _installed:
        return
    import zope.event
    from sqlalchemy import event as sa_event
    from sqlalchemy.orm import Session

    from mailman.model.mailinglist import MailingList

    zope.event.subscribers.append(on_zope_event)
    sa_event.listen(MailingList, "after_update", make_after_update(writable_settings()))
    sa_event.listen(Session, "before_commit", before_commit)
    sa_event.listen(Session, "after_commit", after_commit)
    sa_event.listen(Session, "after_soft_rollback", after_soft_rollback)
    sa_event.listen(Session, "after_transaction_create", after_transaction_create)
    sa_event.listen(Session, "after_transaction_end", after_transaction_end)
    _installed = True
