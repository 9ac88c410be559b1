//! Redis Streams backend (redis-rs). Placeholder: it implements
//! `archiver_core::Backend` and passes the conformance suite in its own issue.
