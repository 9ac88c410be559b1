//! Reaching Redis behind the backend's back, to read or forge entries.
//! Apart from `support`, which the workspace's `tests` crate also
//! includes without the `redis` crate.

#![allow(dead_code)]

use crate::support::RedisHarness;

/// A plain connection to the harness's server.
pub async fn connection(harness: &RedisHarness) -> redis::aio::MultiplexedConnection {
    redis::Client::open(harness.config.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// An `XADD` of the envelope's wire fields and `body` to `stream`, as the
/// backend writes it; add fields to it before sending.
pub fn xadd_envelope(stream: &str, envelope: &archiver_core::Envelope) -> redis::Cmd {
    let mut xadd = redis::cmd("XADD");
    xadd.arg(stream).arg("*");
    for (field, value) in archiver_core::wire::to_fields(envelope) {
        xadd.arg(field).arg(value);
    }
    xadd.arg("body").arg(envelope.body.as_ref());
    xadd
}

/// The stream the backend writes a public list's mail to.
pub fn public_mail_stream(harness: &RedisHarness, list: &str) -> String {
    format!("{}:stream:public:mail:{{{list}}}", harness.config.prefix)
}
