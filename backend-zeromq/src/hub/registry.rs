//! The hub's durable subscribers: name, selection and attempt limit, kept in
//! `subscribers.json` so a restarted hub keeps filling every queue, even
//! those whose archive servers have not come back yet. Where each queue
//! stands is its cursor in the journal.

use std::collections::BTreeMap;
use std::path::PathBuf;

use archiver_core::journal::{JournalError, write_durably};
use archiver_core::{Kind, Selection, SubscriberName};
use serde::{Deserialize, Serialize};

use super::record::Header;

/// One subscriber as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Saved {
    lists: Vec<String>,
    kind: Option<Kind>,
    max_attempts: u32,
}

/// A subscriber's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// What it receives, or why its stored selection cannot be used.
    pub selection: Result<Selection, Unusable>,
    pub max_attempts: u32,
}

/// A stored selection this hub refuses (written before a cap existed, or
/// by hand): the subscriber receives nothing until a hello replaces it,
/// rather than falling open to every list. Kept as stored, so saving the
/// registry does not turn it into "every list" either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    lists: Vec<String>,
    kind: Option<Kind>,
    /// Why it is refused.
    pub error: String,
}

impl Registered {
    /// Whether the subscriber receives the envelope of this header: never
    /// while its selection is unusable.
    pub fn selects(&self, header: &Header) -> bool {
        self.selection
            .as_ref()
            .is_ok_and(|selection| selection.selects(header.kind, &header.list_id))
    }
}

/// The registry file.
pub struct Registry {
    path: PathBuf,
}

impl Registry {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Every registered subscriber.
    pub fn load(&self) -> Result<BTreeMap<SubscriberName, Registered>, JournalError> {
        let corrupt = |reason: String| JournalError::Corrupt {
            path: self.path.clone(),
            offset: 0,
            reason,
        };
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(JournalError::io(&self.path, e)),
        };
        let saved: BTreeMap<String, Saved> =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        saved
            .into_iter()
            .map(|(name, saved)| {
                let name = SubscriberName::new(&name).map_err(|e| corrupt(e.to_string()))?;
                let selection =
                    Selection::from_texts(&saved.lists, saved.kind).map_err(|e| {
                        tracing::error!(subscriber = %name, error = %e, "the stored selection is refused; the subscriber receives nothing until it says hello with a valid one");
                        Unusable {
                            lists: saved.lists,
                            kind: saved.kind,
                            error: format!("stored selection refused: {e}"),
                        }
                    });
                Ok((
                    name,
                    Registered {
                        selection,
                        max_attempts: saved.max_attempts,
                    },
                ))
            })
            .collect()
    }

    /// Replaces the file with these subscribers; durable when it returns.
    pub fn save<'a>(
        &self,
        subscribers: impl Iterator<Item = (&'a SubscriberName, &'a Registered)>,
    ) -> Result<(), JournalError> {
        let saved: BTreeMap<&str, Saved> = subscribers
            .map(|(name, registered)| {
                (
                    name.as_str(),
                    match &registered.selection {
                        Ok(selection) => Saved {
                            lists: selection.pattern_texts(),
                            kind: selection.only_kind(),
                            max_attempts: registered.max_attempts,
                        },
                        Err(unusable) => Saved {
                            lists: unusable.lists.clone(),
                            kind: unusable.kind,
                            max_attempts: registered.max_attempts,
                        },
                    },
                )
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&saved).expect("the registry serialises");
        write_durably(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(dir.path().join("subscribers.json"));
        assert!(registry.load().unwrap().is_empty());
        let mut subscribers = BTreeMap::new();
        subscribers.insert(
            SubscriberName::new("web").unwrap(),
            Registered {
                selection: Ok(Selection::all()
                    .list("*.example.org".parse().unwrap())
                    .only(Kind::Event)),
                max_attempts: 3,
            },
        );
        subscribers.insert(
            SubscriberName::new("all").unwrap(),
            Registered {
                selection: Ok(Selection::all()),
                max_attempts: 5,
            },
        );
        registry.save(subscribers.iter()).unwrap();
        assert_eq!(registry.load().unwrap(), subscribers);
    }

    #[test]
    fn a_stored_selection_over_the_caps_selects_nothing_and_stays_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subscribers.json");
        let hashes = vec!["#"; 400].join(".");
        let stored = serde_json::json!({
            "old": {"lists": [hashes], "kind": null, "max_attempts": 5},
        });
        std::fs::write(&path, stored.to_string()).unwrap();
        let registry = Registry::new(path);
        let loaded = registry.load().unwrap();
        let old = &loaded[&SubscriberName::new("old").unwrap()];
        let error = old.selection.as_ref().unwrap_err();
        assert!(error.error.contains("more than 32 labels"), "{error:?}");
        let list = archiver_core::ListId::new("a.example.org").unwrap();
        let event = archiver_core::Envelope::event(
            &archiver_core::ListEvent::now(list.clone(), archiver_core::ListChange::ListDeleted),
            &archiver_core::MailingList::public(list),
        );
        assert!(
            !old.selects(&super::Header::of(&event)),
            "never falls open to every list"
        );
        registry.save(loaded.iter()).unwrap();
        assert_eq!(registry.load().unwrap(), loaded, "saved back as it was");
    }
}
