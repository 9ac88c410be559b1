//! The whole conformance suite over ZeroMQ on loopback TCP: a hub with its
//! journal, and clients connected to it as archive servers would be.

mod support;

archiver_core::conformance_tests!(support::ZmqHarness::new());
