"""Callables for `mailman withlist -r mm_events.NAME -l LIST` in the list
events test: one transaction that rolls back a subscription and commits another, one that
subscribes and then raises (withlist's transaction is rolled back)."""

from zope.component import getUtility

from mailman.interfaces.member import MemberRole
from mailman.interfaces.usermanager import IUserManager


def _subscribe(mlist, email):
    user = getUtility(IUserManager).create_user(email)
    mlist.subscribe(list(user.addresses)[0], MemberRole.member)


def subscribe_rolled_back_then_committed(mlist):
    """Subscribes frank@example.org and rolls that back, as a runner does
    after a failed entry, then in the same process subscribes
    dave@example.org, which withlist commits: only dave's event may be
    published."""
    from mailman.config import config

    _subscribe(mlist, "frank@example.org")
    config.db.abort()
    _subscribe(mlist, "dave@example.org")


def subscribe_then_raise(mlist):
    """Subscribes erin@example.org, then fails: the transaction is rolled back."""
    _subscribe(mlist, "erin@example.org")
    raise RuntimeError("rolled back on purpose after subscribing erin@example.org")
