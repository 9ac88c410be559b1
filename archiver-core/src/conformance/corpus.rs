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
/// caller) when it is absent. With `ARCHIVER_REQUIRE_CORPUS` set (CI sets
/// it) absence fails the test instead, so a skip can never pass for a run.
pub fn corpus_mbox(test: &str) -> Option<PathBuf> {
    let path = corpus_dir().join("lists.mbox");
    if path.is_file() {
        return Some(path);
    }
    let message = format!(
        "{test}: corpus not found at {} (set ARCHIVER_CORPUS_DIR)",
        path.display()
    );
    assert!(
        std::env::var_os("ARCHIVER_REQUIRE_CORPUS").is_none(),
        "{message}, and ARCHIVER_REQUIRE_CORPUS is set"
    );
    eprintln!("SKIPPED {message}");
    None
}
