//! The whole conformance suite against a real RabbitMQ.

mod support;

archiver_core::conformance_tests!(support::RabbitHarness::new());
