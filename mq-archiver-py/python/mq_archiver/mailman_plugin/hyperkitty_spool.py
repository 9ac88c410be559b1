"""Moving from mailman-hyperkitty: its spool into ``queue/mq``.

mailman-hyperkitty keeps each mail it could not POST to HyperKitty in
``$ARCHIVE_DIR/hyperkitty/spool`` (a Mailman switchboard: ``<time>+<digest>.pck``
pickles of the message and ``{"mlist": <the list>}``), retried only when
the next mail is archived. Turned off, it would strand them there.
:func:`drain` hands each to the ``mq`` runner as ``archive_message`` would
(the same bytes as prototype writes), so the archive servers, and the
HyperKitty bridge among them, get every one.
"""

import logging
import os
from typing import NamedTuple, Optional

log = logging.getLogger("mailman.archiver")


class Drained(NamedTuple):
    """What :func:`drain` did."""

    #: Mails moved into ``queue/mq`` (their spool files removed).
    moved: int
    #: Spool entries left in place (unreadable, list unknown, enqueue
    #: failed); the reasons are in Mailman's archiver log.
    failed: int


def default_spool_dir() -> str:
    """mailman-hyperkitty's spool: ``$ARCHIVE_DIR/hyperkitty/spool``."""
    from mailman.config import config

    return os.path.join(config.ARCHIVE_DIR, "hyperkitty", "spool")


def _list_of(msgdata):
    """The live list the spooled entry was for: the pickled list object
    is detached, so only its id (or name) is read and looked up again."""
    from zope.component import getUtility

    from mailman.interfaces.listmanager import IListManager

    pickled = msgdata.get("mlist")
    state = getattr(pickled, "__dict__", {})
    list_id = state.get("_list_id")
    lists = getUtility(IListManager)
    if list_id:
        return lists.get_by_list_id(list_id), list_id
    name = state.get("list_name"), state.get("mail_host")
    if all(name):
        return lists.get("@".join(name)), "@".join(name)
    return None, repr(pickled)


def _put_back(directory: str, filebase: str) -> None:
    """Undoes the switchboard's dequeue (``.bak`` back to ``.pck``), so the
    entry stays as it was for the next run."""
    os.replace(os.path.join(directory, filebase + ".bak"), os.path.join(directory, filebase + ".pck"))


def drain(directory: Optional[str] = None) -> Drained:
    """Moves every entry of mailman-hyperkitty's spool (default
    :func:`default_spool_dir`) into ``queue/mq``, oldest first; each on its
    own: one that cannot be read, whose list no longer exists, or that
    cannot be enqueued is logged and left in place. An entry is enqueued
    before its file is removed: a crash in between publishes it twice
    (archives, HyperKitty too, de-duplicate by Message-ID)."""
    from mailman.core.switchboard import Switchboard

    from ..mailman import enqueue_mail

    directory = directory or default_spool_dir()
    if not os.path.isdir(directory):
        return Drained(0, 0)
    switchboard = Switchboard("hyperkitty", directory, recover=False)
    switchboard.recover_backup_files()
    moved = failed = 0
    for filebase in switchboard.files:
        try:
            msg, msgdata = switchboard.dequeue(filebase)
        except Exception as error:
            log.error("mq archiver: cannot read the hyperkitty spool entry %s (%s: %s); kept as .psv",
                      filebase, type(error).__name__, error)
            switchboard.finish(filebase, preserve=True)
            failed += 1
            continue
        mlist, named = _list_of(msgdata)
        if mlist is None:
            log.error("mq archiver: the hyperkitty spool entry %s is for %s, which does not exist; "
                      "left in the spool", filebase, named)
            _put_back(directory, filebase)
            failed += 1
            continue
        try:
            enqueue_mail(mlist, msg)
        except Exception:
            log.exception("mq archiver: could not enqueue the hyperkitty spool entry %s; left in the spool",
                          filebase)
            _put_back(directory, filebase)
            failed += 1
            continue
        switchboard.finish(filebase)
        moved += 1
        log.info("mq archiver: hyperkitty spool entry %s of %s moved into queue/mq", filebase, mlist.list_id)
    return Drained(moved, failed)


def drained_line(drained: Drained, directory: Optional[str] = None) -> str:
    """What the ``import-hyperkitty-spool`` commands print."""
    line = f"{drained.moved} mails moved from mailman-hyperkitty's spool into queue/mq"
    if drained.failed:
        line += (f", {drained.failed} left in {directory or default_spool_dir()}"
                 " (the reasons are in Mailman's archiver log)")
    return line
