//! What the hubs said they guarantee, in their WELCOMEs, kept for
//! [`Subscriber::subscriber_capabilities`](archiver_core::Subscriber): only
//! a hub knows its settings (its timeout decides how soon an abandoned
//! delivery comes back), so the client reports what each hub said.

use std::collections::HashMap;
use std::sync::Mutex;

use archiver_core::SubscriberCapabilities;

use crate::config::DEFAULT_TIMEOUT;
use crate::protocol::WireCapabilities;

/// The capabilities of each hub that welcomed a subscription of this
/// client, by endpoint.
#[derive(Default)]
pub struct Learned(Mutex<HashMap<String, WireCapabilities>>);

impl Learned {
    /// Keeps what the hub at `endpoint` said (a restarted hub may say
    /// something else: the last word counts).
    pub fn record(&self, endpoint: &str, capabilities: WireCapabilities) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint.to_owned(), capabilities);
    }

    /// What holds for every hub in `endpoints`: a guarantee only if each
    /// gives it, the longest redelivery time. A hub that has not welcomed a
    /// subscription yet counts as one with the default settings.
    pub fn across(&self, endpoints: &[String]) -> SubscriberCapabilities {
        let heard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let unheard = WireCapabilities::of_hub(DEFAULT_TIMEOUT);
        let mut each = endpoints
            .iter()
            .map(|e| heard.get(e).copied().unwrap_or(unheard));
        let first = each.next().unwrap_or(unheard);
        each.fold(first, |all, hub| WireCapabilities {
            per_list_order: all.per_list_order && hub.per_list_order,
            replay_from_start: all.replay_from_start && hub.replay_from_start,
            native_dead_letter: all.native_dead_letter && hub.native_dead_letter,
            abandoned_redelivery_ms: all.abandoned_redelivery_ms.max(hub.abandoned_redelivery_ms),
        })
        .to_capabilities()
    }
}
