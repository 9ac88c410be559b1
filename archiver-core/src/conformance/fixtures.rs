//! Test data and waits that the backend crates' own integration tests
//! share (dead letters, provenance, consumer names), beyond the scenarios.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{Deliveries, Delivery};
use crate::envelope::{Envelope, EnvelopeId};
use crate::list::MailingList;
use crate::mail::{ArchivedMail, MailLimits};

/// How long [`next_delivery`] and [`ack_until`] wait for each delivery.
const WAIT: Duration = Duration::from_secs(10);

/// The smallest mail of `list`: a fresh `Message-ID` at `domain` and a
/// one-line body.
pub fn small_mail(list: &MailingList, domain: &str) -> Envelope {
    let raw = Bytes::from(format!(
        "Message-ID: <{}@{domain}>\r\n\r\nx\r\n",
        uuid::Uuid::now_v7()
    ));
    Envelope::mail(
        &ArchivedMail::parse(raw, &MailLimits::default()).unwrap(),
        list,
    )
}

/// The next delivery, past the error items that report malformed
/// messages; panics if none comes within 10 s or the stream ends.
pub async fn next_delivery(deliveries: &mut Deliveries) -> Delivery {
    loop {
        let item = tokio::time::timeout(WAIT, deliveries.next())
            .await
            .expect("a delivery")
            .expect("the stream goes on");
        if let Ok(delivery) = item {
            return delivery;
        }
    }
}

/// Acks every delivery, past error items, until `last` is delivered;
/// returns the ids delivered, in order.
pub async fn ack_until(deliveries: &mut Deliveries, last: EnvelopeId) -> Vec<EnvelopeId> {
    let mut delivered = Vec::new();
    while !delivered.contains(&last) {
        let item = tokio::time::timeout(WAIT, deliveries.next())
            .await
            .expect("the genuine mails arrive")
            .unwrap();
        if let Ok(delivery) = item {
            delivered.push(delivery.envelope().id);
            delivery.ack().await.unwrap();
        }
    }
    delivered
}
