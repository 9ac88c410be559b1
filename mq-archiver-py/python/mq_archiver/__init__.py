"""Hand mailing-list mail and list events to archive servers over Redis,
RabbitMQ or ZeroMQ: the Python bindings of the Rust mq-archiver.

One :class:`Archiver` per process, opened from a URL and options::

    from mq_archiver import Archiver

    archiver = Archiver.open(
        "redis://127.0.0.1:6379",
        {"base-url": "https://archive.example.org/list/{list_id}/"},
    )
    receipt = archiver.archive_message(
        "dev.lists.example.org", "dev@lists.example.org", "public", raw_bytes
    )
    print(receipt.outcome, receipt.permalink)

Every call blocks until the Rust side is done, with the GIL released.
Errors are subclasses of :class:`ArchiverError`; :class:`TransientError`
and its subclasses are the ones a later retry may cure. A bug (a Rust
panic) raises :class:`PanicException`, which derives ``BaseException``,
not ``Exception``, as PyO3 makes it.
"""

from ._native import (
    Archiver,
    ArchiverError,
    AuthError,
    BrokerError,
    ClosedError,
    ConfigError,
    EventReceipt,
    ForbiddenError,
    InvalidArgumentError,
    InvalidMailError,
    InvalidOptionError,
    InvalidUrlError,
    PanicException,
    Receipt,
    SpoolError,
    SpoolStatus,
    TooLargeError,
    TransientError,
    UnavailableError,
    UnroutableError,
    __version__,
)

__all__ = [
    "Archiver",
    "ArchiverError",
    "AuthError",
    "BrokerError",
    "ClosedError",
    "ConfigError",
    "EventReceipt",
    "ForbiddenError",
    "InvalidArgumentError",
    "InvalidMailError",
    "InvalidOptionError",
    "InvalidUrlError",
    "PanicException",
    "Receipt",
    "SpoolError",
    "SpoolStatus",
    "TooLargeError",
    "TransientError",
    "UnavailableError",
    "UnroutableError",
    "__version__",
]
