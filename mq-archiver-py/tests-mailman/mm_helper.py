"""Runs inside the Mailman venv, as a separate process per call like the
`mailman` CLI: `python mm_helper.py CFG setup LIST POLICY`, `... inject
LIST DIR` (every DIR/*.eml through mailman.app.inject.inject_text, what
`mailman inject` calls, in one process instead of one per mail) and
`... held LIST` (prints the held-message count) and `... urls LIST FILE`
(the plugin's list_url and permalink, as JSON)."""

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
    elif command == "held":
        mlist = getUtility(IListManager).get(fqdn)
        print(IListRequests(mlist).count_of(RequestType.held_message))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
