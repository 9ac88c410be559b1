"""The bindings through the in-process backend (memory:) and ZeroMQ:
receipts, URLs, events, the spool's status and close, the exception
classes. Redis round trips are in test_redis.py."""

import uuid

import pytest

import mq_archiver
from mq_archiver import Archiver
from conftest import BASE_URL, LIST_ADDRESS, LIST_ID, mail

HASH_12345 = "RSZCG7IGPHFIRW3EMTVMMDNJMNCVCOLE"  # HyperKitty's hash of <12345>


@pytest.fixture
def memory():
    archiver = Archiver.open(f"memory:{uuid.uuid4().hex}", {"base-url": BASE_URL})
    yield archiver
    archiver.close(1)


def test_a_mail_is_published_with_its_hash_envelope_and_permalink(memory):
    receipt = memory.archive_message(LIST_ID, LIST_ADDRESS, "public", mail())
    assert receipt.outcome == "published"
    assert receipt.skip_reason is None
    assert receipt.message_id_hash == HASH_12345
    assert uuid.UUID(receipt.envelope_id).version == 7
    assert receipt.permalink == f"https://archive.example.org/list/{LIST_ID}/{HASH_12345}"
    assert memory.permalink(LIST_ID, LIST_ADDRESS, "public", mail()) == receipt.permalink
    assert memory.list_url(LIST_ID, None, "private") == f"https://archive.example.org/list/{LIST_ID}/"
    assert repr(receipt) == (
        f"Receipt(outcome='published', skip_reason=None, message_id_hash='{HASH_12345}', "
        f"envelope_id='{receipt.envelope_id}', permalink='{receipt.permalink}')"
    )
    assert memory.name == "mq-archiver"


def test_skips_are_receipts_not_errors(memory):
    opted_out = memory.archive_message(LIST_ID, None, "public", mail(extra_headers=b"X-No-Archive: yes\r\n"))
    assert (opted_out.outcome, opted_out.skip_reason) == ("skipped", "x_no_archive")
    assert opted_out.envelope_id is None and opted_out.permalink is None
    assert opted_out.message_id_hash == HASH_12345
    archive_no = memory.archive_message(LIST_ID, None, "private", mail(extra_headers=b"X-Archive: no\r\n"))
    assert archive_no.skip_reason == "x_archive_no"
    never = memory.archive_message(LIST_ID, None, "never", mail())
    assert (never.outcome, never.skip_reason) == ("skipped", "list_not_archived")
    assert memory.list_url(LIST_ID, None, "never") is None
    assert memory.permalink(LIST_ID, None, "never", mail()) is None


def test_events_from_dicts(memory):
    added = memory.archive_event(
        LIST_ID, LIST_ADDRESS, "private",
        {"type": "membership_added", "address": "ann@example.org", "role": "owner", "actor": "admin@example.org"},
    )
    assert added.outcome == "published" and uuid.UUID(added.envelope_id).version == 7
    for event in [
        {"type": "list_created", "posting_address": LIST_ADDRESS},
        {"type": "list_deleted", "at": "2026-11-24T10:00:00Z"},
        {"type": "membership_removed", "address": "ann@example.org", "role": "nonmember"},
        {"type": "settings_changed", "changes": {"max_message_size": 0, "description": "Dev"}},
        {"type": "list_deleted", "list_id": LIST_ID},
    ]:
        assert memory.archive_event(LIST_ID, None, "public", event).outcome == "published", event
    never = memory.archive_event(LIST_ID, None, "never", {"type": "list_deleted"})
    assert (never.outcome, never.skip_reason, never.envelope_id) == ("skipped", "list_not_archived", None)
    assert repr(never) == "EventReceipt(outcome='skipped', skip_reason='list_not_archived', envelope_id=None)"


@pytest.mark.parametrize(
    "event",
    [
        {"type": "no_such_event"},
        {"type": "membership_added", "address": "ann@example.org"},  # no role
        {"type": "membership_added", "address": "ann@example.org", "role": "king"},
        {"address": "ann@example.org"},  # no type
        {"type": "list_deleted", "at": "yesterday"},
        {"type": "list_deleted", "list_id": "other.example.org"},  # not this list's
    ],
)
def test_bad_events_raise_invalid_argument(memory, event):
    with pytest.raises(mq_archiver.InvalidArgumentError):
        memory.archive_event(LIST_ID, None, "public", event)


@pytest.mark.parametrize(
    "list_id, list_address, policy",
    [("a..b", None, "public"), (LIST_ID, "not an address", "public"), (LIST_ID, None, "sometimes")],
)
def test_bad_lists_raise_invalid_argument(memory, list_id, list_address, policy):
    with pytest.raises(mq_archiver.InvalidArgumentError):
        memory.archive_message(list_id, list_address, policy, mail())
    with pytest.raises(mq_archiver.InvalidArgumentError):
        memory.list_url(list_id, list_address, policy)


def test_bad_mail_raises_invalid_mail(memory):
    with pytest.raises(mq_archiver.InvalidMailError) as caught:
        memory.archive_message(LIST_ID, None, "public", b"")
    assert not isinstance(caught.value, mq_archiver.TooLargeError)
    with pytest.raises(mq_archiver.InvalidMailError):
        memory.permalink(LIST_ID, None, "public", b"")


@pytest.mark.parametrize(
    "url, options, error",
    [
        ("gopher://example.org/", {"base-url": BASE_URL}, mq_archiver.InvalidUrlError),
        ("redis://", {"base-url": BASE_URL}, mq_archiver.InvalidUrlError),
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/", {"base-url": BASE_URL}, mq_archiver.InvalidUrlError),
        ("memory:", {}, mq_archiver.InvalidOptionError),  # base-url missing
        ("memory:", {"base-url": "ftp://example.org/"}, mq_archiver.InvalidOptionError),
        ("memory:", {"base-url": BASE_URL, "no-such-option": "x"}, mq_archiver.InvalidOptionError),
        ("memory:", {"base-url": BASE_URL, "queue-type": "quorum"}, mq_archiver.InvalidOptionError),
        ("redis://127.0.0.1:1", {"base-url": BASE_URL, "claim-idle": "s3cret-value"}, mq_archiver.InvalidOptionError),
        ("tcp://127.0.0.1:*", {"base-url": BASE_URL}, mq_archiver.InvalidOptionError),  # hub-dir missing
        # A file an option names that cannot be used is the option's
        # error, not the URL's (BackendError::InvalidConfig).
        ("rediss://127.0.0.1:1", {"base-url": BASE_URL, "tls-ca-file": "/nonexistent/ca.pem"}, mq_archiver.InvalidOptionError),
        ("amqps://127.0.0.1:1/%2f", {"base-url": BASE_URL, "tls-ca-file": "/nonexistent/ca.pem"}, mq_archiver.InvalidOptionError),
    ],
)
def test_bad_configurations_raise_config_errors(url, options, error):
    with pytest.raises(error) as caught:
        Archiver.open(url, options)
    assert isinstance(caught.value, mq_archiver.ConfigError)
    assert isinstance(caught.value, mq_archiver.ArchiverError)
    assert "s3cret" not in str(caught.value)


def test_an_unreachable_broker_is_transient_and_the_password_is_not_shown():
    with pytest.raises(mq_archiver.TransientError) as caught:
        Archiver.open("redis://archiver:s3cret@127.0.0.1:1", {"base-url": BASE_URL})
    assert isinstance(caught.value, mq_archiver.UnavailableError), repr(caught.value)
    assert "s3cret" not in str(caught.value)


def test_options_must_be_strings():
    with pytest.raises(TypeError):
        Archiver.open("memory:", {"base-url": BASE_URL, "max-envelope-bytes": 10})


def test_spool_status_and_close(tmp_path):
    archiver = Archiver.open(
        f"memory:{uuid.uuid4().hex}",
        {"base-url": BASE_URL, "spool-dir": str(tmp_path / "spool"), "publish-timeout": "2s"},
    )
    status = archiver.spool_status()
    assert (status.depth, status.spooled, status.drained, status.rejected) == (0, 0, 0, 0)
    assert status.oldest_age is None and status.stuck_seq is None
    assert repr(status) == "SpoolStatus(depth=0, oldest_age=None, spooled=0, drained=0, rejected=0, stuck_seq=None)"
    assert archiver.archive_message(LIST_ID, None, "public", mail()).outcome == "published"
    with pytest.raises(mq_archiver.SpoolError):  # a live process (this one) holds it
        archiver.adopt_spool(tmp_path / "spool")
    left = archiver.close(5)
    assert left.depth == 0
    with pytest.raises((mq_archiver.ClosedError, mq_archiver.SpoolError)):
        archiver.archive_message(LIST_ID, None, "public", mail())
    with pytest.raises(mq_archiver.InvalidArgumentError):
        archiver.close(-1)


def test_without_a_spool(memory):
    assert memory.spool_status() is None
    with pytest.raises(mq_archiver.SpoolError):
        memory.adopt_spool("/nonexistent")
    assert memory.close(1) is None
    with pytest.raises(mq_archiver.ClosedError):
        memory.archive_message(LIST_ID, None, "public", mail())


def test_zeromq_hub_publishes(tmp_path):
    archiver = Archiver.open(
        f"ipc://{tmp_path}/hub.sock",
        {"base-url": BASE_URL, "hub-dir": str(tmp_path / "hub"), "anonymous": "true"},
    )
    try:
        receipt = archiver.archive_message(LIST_ID, LIST_ADDRESS, "public", mail())
        assert receipt.outcome == "published"
    finally:
        archiver.close(1)


def test_the_package_exports_its_api():
    for name in mq_archiver.__all__:
        assert getattr(mq_archiver, name) is getattr(mq_archiver._native, name)
    assert mq_archiver.Archiver.__module__ == "mq_archiver"
    assert issubclass(mq_archiver.TooLargeError, mq_archiver.InvalidMailError)
    assert issubclass(mq_archiver.AuthError, mq_archiver.TransientError)
    # PyO3's panic type, exported so a caller can name it: not an Exception.
    assert issubclass(mq_archiver.PanicException, BaseException)
    assert not issubclass(mq_archiver.PanicException, Exception)
    assert mq_archiver.Archiver.archive_message.__doc__
