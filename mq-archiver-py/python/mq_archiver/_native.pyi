"""Type stubs of the native module mq_archiver._native (Rust, PyO3)."""

from os import PathLike
from typing import Any, Dict, Literal, Optional, Union, final

__version__: str

ArchivePolicy = Literal["public", "private", "never"]
Outcome = Literal["published", "spooled", "skipped"]
SkipReason = Literal["x_no_archive", "x_archive_no", "list_not_archived"]

@final
class Archiver:
    """A list server's archiver: publishes each mail and list event once to
    the backend a URL names, spooling to local disk while the broker is
    away when the ``spool-dir`` option is given. Thread-safe; one per
    process is enough."""

    @staticmethod
    def open(url: str, options: Optional[Dict[str, str]] = None) -> "Archiver":
        """Connects to the backend ``url`` names (``memory:``, ``redis://``,
        ``rediss://``, ``redis+unix://``, ``amqp://``, ``amqps://``,
        ``tcp://``, ``ipc://``; for ZeroMQ binds the hub) and opens the spool
        when ``spool-dir`` is given. ``base-url`` is required.

        Raises ConfigError (InvalidUrlError, InvalidOptionError), a
        TransientError when the broker cannot be reached, SpoolError."""
    @property
    def name(self) -> str:
        """The archiver's name (option ``archiver-name``, default ``mq-archiver``)."""
    def archive_message(
        self,
        list_id: str,
        list_address: Optional[str],
        archive_policy: ArchivePolicy,
        raw: bytes,
    ) -> "Receipt":
        """Hands a mail, as received, to the archives; returns once it is
        published durably, spooled, or deliberately skipped.

        Raises InvalidArgumentError, InvalidMailError, TooLargeError,
        ForbiddenError, UnroutableError, SpoolError, TransientError."""
    def archive_event(
        self,
        list_id: str,
        list_address: Optional[str],
        archive_policy: ArchivePolicy,
        event: Dict[str, Any],
    ) -> "EventReceipt":
        """Hands a list event (its JSON form as a dict, e.g.
        ``{"type": "membership_added", "address": "ann@example.org",
        "role": "owner"}``) to the archives, marked with the list's policy.
        ``list_id`` defaults to the list's, ``at`` (RFC 3339) to now;
        ``actor`` is optional.

        Raises InvalidArgumentError and what archive_message raises."""
    def permalink(
        self,
        list_id: str,
        list_address: Optional[str],
        archive_policy: ArchivePolicy,
        raw: bytes,
    ) -> Optional[str]:
        """The mail's archive URL, without archiving it; None for policy
        ``never``. Raises InvalidMailError, TooLargeError."""
    def list_url(
        self,
        list_id: str,
        list_address: Optional[str],
        archive_policy: ArchivePolicy,
    ) -> Optional[str]:
        """The list's archive URL; None for policy ``never``."""
    def spool_status(self) -> Optional["SpoolStatus"]:
        """The spool's depth, age and counters; None without ``spool-dir``."""
    def adopt_spool(self, dir: Union[str, "PathLike[str]"]) -> int:
        """Adopts a spool directory no live process holds; returns how many
        envelopes joined this archiver's spool. Raises SpoolError."""
    def close(self, within_seconds: float) -> Optional["SpoolStatus"]:
        """Waits at most ``within_seconds`` for the spool to drain, then
        closes; later calls raise ClosedError or SpoolError. Returns what
        the spool still holds; None without a spool."""

@final
class Receipt:
    """What archive_message did with a mail."""

    @property
    def outcome(self) -> Outcome: ...
    @property
    def skip_reason(self) -> Optional[SkipReason]: ...
    @property
    def message_id_hash(self) -> str: ...
    @property
    def envelope_id(self) -> Optional[str]: ...
    @property
    def permalink(self) -> Optional[str]: ...

@final
class EventReceipt:
    """What archive_event did with a list event."""

    @property
    def outcome(self) -> Outcome: ...
    @property
    def skip_reason(self) -> Optional[Literal["list_not_archived"]]: ...
    @property
    def envelope_id(self) -> Optional[str]: ...

@final
class SpoolStatus:
    """What the local spool holds and has done since it was opened."""

    @property
    def depth(self) -> int: ...
    @property
    def oldest_age(self) -> Optional[float]:
        """Seconds the oldest waiting envelope has waited."""
    @property
    def spooled(self) -> int: ...
    @property
    def drained(self) -> int: ...
    @property
    def rejected(self) -> int: ...
    @property
    def stuck_seq(self) -> Optional[int]: ...
    @property
    def stuck_error(self) -> Optional[str]: ...

class ArchiverError(Exception):
    """Base class of every error the archiver raises."""

class ConfigError(ArchiverError):
    """The URL or an option cannot give an archiver."""

class InvalidUrlError(ConfigError):
    """The URL does not parse, names no backend, or is not supported yet."""

class InvalidOptionError(ConfigError):
    """An option is unknown, not for this backend, malformed or missing."""

class InvalidArgumentError(ArchiverError):
    """A list id, list address, archive policy, event or duration is not valid."""

class InvalidMailError(ArchiverError):
    """The bytes cannot be archived as a mail (empty, no header)."""

class TooLargeError(InvalidMailError):
    """The mail is above the mail limit or the backend's envelope limit."""

class ForbiddenError(ArchiverError):
    """The backend's grants do not allow it; asking again is refused again."""

class UnroutableError(ArchiverError):
    """No queue takes the envelope and the backend refuses unrouted mail."""

class SpoolError(ArchiverError):
    """The local spool could not open or keep the envelope, or there is none."""

class TransientError(ArchiverError):
    """The backend did not take it now; the same call may succeed later."""

class UnavailableError(TransientError):
    """The broker cannot be reached, went away, or did not confirm in time."""

class BrokerError(TransientError):
    """The broker refused or lost the request."""

class AuthError(TransientError):
    """The broker refused the credentials."""

class ClosedError(TransientError):
    """The archiver was closed."""

class PanicException(BaseException):
    """A Rust panic (a bug) inside a call, as PyO3 raises it: a
    ``BaseException``, so ``except Exception`` does not catch it."""
