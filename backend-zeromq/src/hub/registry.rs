//! The hub's durable subscribers: name, selection and attempt limit, kept in
//! `subscribers.json` so a restarted hub keeps filling every queue, even
//! those whose archive servers have not come back yet. Where each queue
//! stands is its cursor in the journal.

use std::collections::BTreeMap;
use std::path::PathBuf;

use archiver_core::journal::{JournalError, write_durably};
use archiver_core::{Kind, Selection, SubscriberName};
use serde::{Deserialize, Serialize};

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
    pub selection: Selection,
    pub max_attempts: u32,
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
                let selection = Selection::from_texts(&saved.lists, saved.kind)
                    .map_err(|e| corrupt(e.to_string()))?;
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
                    Saved {
                        lists: registered.selection.pattern_texts(),
                        kind: registered.selection.only_kind(),
                        max_attempts: registered.max_attempts,
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
                selection: Selection::all()
                    .list("*.example.org".parse().unwrap())
                    .only(Kind::Event),
                max_attempts: 3,
            },
        );
        subscribers.insert(
            SubscriberName::new("all").unwrap(),
            Registered {
                selection: Selection::all(),
                max_attempts: 5,
            },
        );
        registry.save(subscribers.iter()).unwrap();
        assert_eq!(registry.load().unwrap(), subscribers);
    }
}
