//! The whole conformance suite through the facade's URLs and options, for
//! every backend as a user configures it: `memory:`, Redis, RabbitMQ with
//! quorum and with classic queues, and ZeroMQ over tcp and ipc. This is
//! the only wiring of the suite (the backends' own tests no longer run it).

mod support;

use support::UrlHarness;

mod memory {
    mq_archiver::conformance_tests!(super::UrlHarness::memory());
}

mod redis {
    mq_archiver::conformance_tests!(super::UrlHarness::redis());
}

mod rabbitmq_quorum {
    mq_archiver::conformance_tests!(super::UrlHarness::rabbitmq("quorum"));
}

mod rabbitmq_classic {
    mq_archiver::conformance_tests!(super::UrlHarness::rabbitmq("classic"));
}

mod zeromq_tcp {
    mq_archiver::conformance_tests!(super::UrlHarness::zeromq_tcp());
}

mod zeromq_ipc {
    mq_archiver::conformance_tests!(super::UrlHarness::zeromq_ipc());
}
