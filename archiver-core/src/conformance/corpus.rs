//! Where the shared corpus of real list mail is.

use std::path::PathBuf;

/// The corpus folder: `$ARCHIVER_CORPUS_DIR`, else `../shared/corpus` beside
/// the workspace.
pub fn corpus_dir() -> PathBuf {
    std::env::var_os("ARCHIVER_CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus"))
        })
}

/// The corpus mbox, or None (and a clear SKIPPED line on stderr naming the
/// caller) when it is absent.
pub fn corpus_mbox(test: &str) -> Option<PathBuf> {
    let path = corpus_dir().join("lists.mbox");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED {test}: corpus not found at {} (set ARCHIVER_CORPUS_DIR)",
            path.display()
        );
        None
    }
}
