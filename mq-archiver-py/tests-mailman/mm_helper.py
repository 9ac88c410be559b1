"""Runs inside the Mailman venv, as a separate process per call like the
`mailman` CLI: `python mm_helper.py CFG setup LIST POLICY`, `... inject
LIST DIR` (every DIR/*.eml through mailman.app.inject.inject_text, what
`mailman inject` calls, in one process instead of one per mail) and
`... held LIST` (prints the held-message count), `... urls LIST FILE`
(the plugin's list_url and permalink, as JSON), `... archive LIST FILE`
(the plugin's Archiver.archive_message, as the archive runner calls it;
prints its return value as JSON) and `... dispose-panic LIST FILE` (the mq
Runner's _dispose with a native client whose archive_message panics;
prints what _dispose returned and the runner's stop flag and status)."""

import os
import sys

from mailman.config import config
from mailman.core.initialize import initialize


def main():
    cfg, command, fqdn = sys.argv[1:4]
    initialize(cfg)
    from zope.component import getUtility

    from mailman.app.lifecycle import create_list
    from mailman.interfaces.action import Action
    from mailman.interfaces.archiver import ArchivePolicy
    from mailman.interfaces.listmanager import IListManager
    from mailman.interfaces.requests import IListRequests, RequestType

    if command == "setup":
        from mailman.interfaces.domain import IDomainManager

        domains = getUtility(IDomainManager)
        if domains.get(fqdn.split("@")[1]) is None:
            domains.add(fqdn.split("@")[1])
        mlist = create_list(fqdn)
        mlist.archive_policy = ArchivePolicy[sys.argv[4]]
        mlist.max_message_size = 0
        mlist.max_num_recipients = 0
        mlist.require_explicit_destination = False
        mlist.administrivia = False
        mlist.default_nonmember_action = Action.accept
        config.db.commit()
    elif command == "inject":
        from mailman.app.inject import inject_text

        mlist = getUtility(IListManager).get(fqdn)
        directory = sys.argv[4]
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), "rb") as f:
                inject_text(mlist, f.read())
        config.db.commit()
    elif command == "urls":
        import json

        from mailman.email.message import Message
        from email import message_from_bytes

        from mq_archiver.mailman import Archiver

        mlist = getUtility(IListManager).get(fqdn)
        with open(sys.argv[4], "rb") as f:
            msg = message_from_bytes(f.read(), Message)
        archiver = Archiver()
        print(json.dumps({"list_url": archiver.list_url(mlist), "permalink": archiver.permalink(mlist, msg)}))
    elif command == "archive":
        import json

        from mailman.email.message import Message
        from email import message_from_bytes

        from mq_archiver.mailman import Archiver

        mlist = getUtility(IListManager).get(fqdn)
        with open(sys.argv[4], "rb") as f:
            msg = message_from_bytes(f.read(), Message)
        print(json.dumps(Archiver().archive_message(mlist, msg)))
    elif command == "dispose-panic":
        import json

        from mailman.email.message import Message
        from email import message_from_bytes

        import mq_archiver
        from mq_archiver import mailman as plugin

        # The real class once the package exports it; before that a
        # stand-in of the same kind (PyO3's derives BaseException).
        panic = getattr(mq_archiver, "PanicException", None) or type("PanicException", (BaseException,), {})

        class Panicking:
            def archive_message(self, *args):
                raise panic("assertion failed: a bug in the native client")

            def close(self, within):
                return None

        mlist = getUtility(IListManager).get(fqdn)
        with open(sys.argv[4], "rb") as f:
            raw = f.read()
        msg = message_from_bytes(raw, Message)
        runner = plugin.Runner("mq")
        plugin._client, plugin._client_pid = Panicking(), os.getpid()
        msgdata = {"listid": mlist.list_id, "mq_list_address": mlist.posting_address,
                   "mq_policy": mlist.archive_policy.name, "mq_raw": raw}
        keep = runner._dispose(mlist, msg, msgdata)
        print(json.dumps({"keep": keep, "stop": runner._stop, "status": runner.status}))
    elif command == "held":
        mlist = getUtility(IListManager).get(fqdn)
        print(IListRequests(mlist).count_of(RequestType.held_message))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
