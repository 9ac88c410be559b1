//! The whole conformance suite against a real Redis.

mod support;

archiver_core::conformance_tests!(support::RedisHarness::new());
