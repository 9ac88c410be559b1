//! One request to a hub and its reply (dead letters, replay, purge, unsubscribe),
//! on a socket of its own that lives as long as the request.

use std::time::Instant;

use archiver_core::{BackendError, ErrorDetail};

use super::link::Link;
use crate::config::ClientConfig;
use crate::protocol::command;

/// Sends `frames` to the hub at `endpoint` and returns its reply; blocks,
/// so call it from a blocking task.
pub fn request(
    context: &zmq::Context,
    endpoint: &str,
    config: &ClientConfig,
    frames: Vec<Vec<u8>>,
) -> Result<Vec<Vec<u8>>, BackendError> {
    let timeout = config.connect_timeout;
    let link = Link::open(context, endpoint, config, zmq::DEALER)?;
    link.socket
        .set_linger(0)
        .map_err(|e| BackendError::Unavailable(ErrorDetail::from_error(e)))?;
    link.socket
        .send_multipart(frames, zmq::DONTWAIT)
        .map_err(|e| {
            BackendError::Unavailable(ErrorDetail::caused_by(
                format!("sending to {endpoint}: {e}"),
                e,
            ))
        })?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BackendError::Unavailable(
                format!("no answer from the hub at {endpoint} within {timeout:?}").into(),
            ));
        }
        let mut items = [
            link.socket.as_poll_item(zmq::POLLIN),
            link.monitor().as_poll_item(zmq::POLLIN),
        ];
        zmq::poll(&mut items, left.as_millis().max(1) as i64)
            .map_err(|e| BackendError::Unavailable(ErrorDetail::from_error(e)))?;
        if items[1].is_readable()
            && let Some(failure) = link.handshake_failure()
        {
            return Err(failure);
        }
        if items[0].is_readable() {
            let reply = link
                .socket
                .recv_multipart(0)
                .map_err(|e| BackendError::Unavailable(ErrorDetail::from_error(e)))?;
            let refusal: Option<fn(ErrorDetail) -> BackendError> =
                match reply.first().map(Vec::as_slice) {
                    Some(command::FORBIDDEN) => Some(BackendError::Forbidden),
                    Some(command::ERROR) => Some(BackendError::Broker),
                    _ => None,
                };
            if let Some(refusal) = refusal {
                let reason = reply
                    .get(1)
                    .map(|r| String::from_utf8_lossy(r).into_owned());
                return Err(refusal(
                    format!(
                        "the hub at {endpoint} refused the request: {}",
                        reason.unwrap_or_default()
                    )
                    .into(),
                ));
            }
            return Ok(reply);
        }
    }
}
