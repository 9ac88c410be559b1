//! RabbitMQ backend (lapin). Placeholder: it implements `archiver_core::Backend`
//! and passes the conformance suite in its own issue.
