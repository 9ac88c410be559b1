//! Cross-backend integration and fault tests against real brokers and real
//! processes. Placeholder until the backends land; the in-process end-to-end
//! check is `examples/tests/quickstart.rs`.
