//! Python bindings of the `mq-archiver` facade: the native module
//! `mq_archiver._native` of the `mq_archiver` Python package, so a Python
//! list server (GNU Mailman 3) archives through the same Rust code as a
//! Rust one. The package's `__init__.py` re-exports everything here; its
//! `_native.pyi` gives the types.
//!
//! The calls are synchronous, as Mailman calls its archivers: each blocks
//! on one Tokio runtime per process (the private `runtime` module) with the GIL released.

mod archiver;
mod errors;
mod receipts;

use std::sync::LazyLock;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// The process's one Tokio runtime, made at the first `Archiver.open`
/// (not at import, so a process that forks before opening gives each
/// child its own). Multi-threaded because the spool's drain and the
/// backends' connection tasks must run between calls, not only while a
/// call blocks on it; two workers are plenty for one list server process
/// (Mailman runs each runner as its own process).
fn runtime() -> &'static Runtime {
    static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mq-archiver")
            .enable_all()
            .build()
            .expect("the mq-archiver runtime could not start (out of threads or file descriptors)")
    });
    &RUNTIME
}

/// The native module; `mq_archiver` re-exports it.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<archiver::Archiver>()?;
    m.add_class::<receipts::Receipt>()?;
    m.add_class::<receipts::EventReceipt>()?;
    m.add_class::<receipts::SpoolStatus>()?;
    // What a Rust panic inside a call raises: a BaseException, so neither
    // `except ArchiverError` nor `except Exception` catches it. Exported so
    // that a caller (the Mailman runner) can name it.
    m.add(
        "PanicException",
        m.py().get_type::<pyo3::panic::PanicException>(),
    )?;
    errors::register(m)
}
