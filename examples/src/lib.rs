//! Archive servers to run and copy, built on `archiver_core::Runner`:
//!
//! - [`maildir::MaildirArchive`] stores each mail, byte for byte, in a
//!   Maildir per list;
//! - [`thread_index::ThreadIndex`] keeps a JSON index of each list's
//!   threads and events.
//!
//! The `quickstart` binary runs a list server and both archive servers in one
//! process, on the in-memory backend or on a real broker ([`broker`]).

pub mod broker;
pub mod maildir;
pub mod thread_index;
