//! Archive servers to run and copy, built on `mq_archiver::Runner`:
//!
//! - [`maildir::MaildirArchive`] stores each mail, byte for byte, in a
//!   Maildir per list;
//! - [`thread_index::ThreadIndex`] keeps a JSON index of each list's
//!   threads and events.
//!
//! The `quickstart` binary runs a list server and both archive servers in one
//! process, on the backend its `--url` names (through the `mq-archiver`
//! facade: the in-memory backend, Redis, RabbitMQ or ZeroMQ).

pub mod maildir;
pub mod thread_index;
