"""``mailman mq status`` and ``mailman mq retry-parked``."""

import json
import sys

import click
from mailman.interfaces.command import ICLISubCommand
from zope.interface import implementer

from ... import mailman as plugin
from .. import hyperkitty_spool
from .. import status as status_module

#: Mailman's component scan only looks at modules with ``__all__``.
__all__ = ["MQ"]


@click.group(help="The mq archiver: its queue, spool and parked mails.")
def mq() -> None:
    """The command group."""


@mq.command(help="Show queue/mq, the spool and the parked mails (no lock taken).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def status(as_json: bool) -> None:
    """Prints :func:`status_module.read_status`."""
    report = status_module.read_status()
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(status_module.format_status(report))


@mq.command(name="retry-parked", help="Move every parked mail and event back into queue/mq.")
def retry_parked() -> None:
    """Runs :func:`mq_archiver.mailman.retry_parked`; exits 1 when one
    could not be moved (Mailman's ``mailman`` command commits)."""
    retried = plugin.retry_parked()
    print(plugin.retried_line(retried))
    if retried.failed:
        sys.exit(1)


@mq.command(name="import-hyperkitty-spool",
            help="Move mailman-hyperkitty's spooled mails into queue/mq (once, when turning it off).")
@click.option("--spool-dir", default=None,
              help="mailman-hyperkitty's spool (default: $ARCHIVE_DIR/hyperkitty/spool).")
def import_hyperkitty_spool(spool_dir) -> None:
    """Runs :func:`hyperkitty_spool.drain`; exits 1 when an entry could
    not be moved (the reasons are in Mailman's archiver log)."""
    drained = hyperkitty_spool.drain(spool_dir)
    print(hyperkitty_spool.drained_line(drained, spool_dir))
    if drained.failed:
        sys.exit(1)


@implementer(ICLISubCommand)
class MQ:
    """``mailman mq``."""

    name = "mq"
    command = mq
