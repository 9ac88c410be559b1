//! The whole conformance suite against the in-memory backend.

archiver_core::conformance_tests!(archiver_core::conformance::MemoryHarness::new());
