"""The Mailman plugin half of mq_archiver: list events and the ``mailman
mq`` command. (The archiver and the ``mq`` runner are
:mod:`mq_archiver.mailman`.)

In ``mailman.cfg``, beside ``[archiver.mq]`` and ``[runner.mq]``::

    [plugin.mq]
    class: mq_archiver.mailman_plugin.Plugin
    enabled: yes
    component_package: mq_archiver.mailman_plugin

``class`` makes every Mailman process (each CLI command, the REST runner,
the ``in`` runner, ...) record list events and hand them, once committed,
to the ``mq`` runner (:mod:`.events`); ``component_package`` adds the
``mailman mq`` subcommand (``status``, ``retry-parked``:
:mod:`.commands.cli_mq`).
"""

from mailman.interfaces.plugin import IPlugin
from zope.interface import implementer

from . import events

__all__ = ["Plugin"]


@implementer(IPlugin)
class Plugin:
    """``[plugin.mq]``: subscribes to Mailman's list events in every
    process (:func:`.events.install`). It adds no REST resource."""

    def pre_hook(self) -> None:
        """Runs before Mailman opens its database, in every process."""
        events.install()

    def post_hook(self) -> None:
        """Nothing to do once Mailman is initialised."""

    @property
    def resource(self) -> None:
        """No REST resource: the state is shown by ``mailman mq status``."""
        return None
