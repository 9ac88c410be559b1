//! Scenario on transient pub/sub: a live tail keeps nothing.

use futures::StreamExt;

use super::Harness;
use super::support::{DEADLINE, QUIET, list, mail, publish_all};
use crate::backend::{Subscriber, Tail};
use crate::envelope::Envelope;
use crate::selection::Selection;

async fn next_tailed(tail: &mut Tail, what: &str) -> Envelope {
    match tokio::time::timeout(DEADLINE, tail.next()).await {
        Ok(Some(Ok(envelope))) => envelope,
        Ok(Some(Err(e))) => panic!("{what}: tail failed: {e}"),
        Ok(None) => panic!("{what}: tail ended"),
        Err(_) => panic!("{what}: nothing tailed within {DEADLINE:?}"),
    }
}

/// A tail sees what is published while it is attached, in its selection,
/// and nothing from before it attached or while it was gone.
pub async fn live_tail_sees_only_live_messages<H: Harness>(harness: &H) {
    let backend = harness.subscriber().await;
    let publisher = harness.publisher().await;
    let watched = list("live.lists.example.org");
    let other = list("other.lists.example.org");
    let selection = Selection::all().list(watched.clone().into());
    publish_all(
        &publisher,
        &(0..5).map(|i| mail(&watched, i)).collect::<Vec<_>>(),
    )
    .await;

    let mut tail = backend.tail(&selection).await.expect("tail");
    let live: Vec<Envelope> = (5..15).map(|i| mail(&watched, i)).collect();
    for (i, envelope) in live.iter().enumerate() {
        publish_all(&publisher, &[mail(&other, i), envelope.clone()]).await;
    }
    for expected in &live {
        assert_eq!(
            &next_tailed(&mut tail, "live tail").await,
            expected,
            "tail sees live messages in order, nothing older, no other list"
        );
    }
    assert!(
        tokio::time::timeout(QUIET, tail.next()).await.is_err(),
        "tail saw more than was published"
    );
    drop(tail);

    publish_all(&publisher, &[mail(&watched, 15)]).await;
    let mut again = backend.tail(&selection).await.expect("tail again");
    let fresh = mail(&watched, 16);
    publish_all(&publisher, std::slice::from_ref(&fresh)).await;
    assert_eq!(
        next_tailed(&mut again, "new tail").await,
        fresh,
        "nothing was kept for a tail while it was gone"
    );
}
