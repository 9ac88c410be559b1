//! Finding a secret or a mail body in captured log output in every form a
//! `Debug` can print bytes: as text, as escaped text (`{:?}` of a `str` or
//! of `Bytes`: `\r\n`, `\"`), as a decimal byte list (lapin's
//! `Body(1, [77, 101, ...])`), or as hex. Used by the log-capture tests,
//! which run real processes at `RUST_LOG=trace`.

use std::path::{Path, PathBuf};

/// Everything the processes of a run wrote, as text: every `*.out` and
/// `*.err` file in `dir`, in name order, each read lossily as UTF-8.
pub fn captured_output(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "out" || x == "err"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned())
        .collect()
}

/// What of `password` and of the numbered mail `bodies` shows in `log`,
/// each named with the form it shows in (see [`leaked_form`]), for a
/// failure message; empty when nothing leaked.
pub fn leaks<'a>(
    log: &str,
    password: &[u8],
    bodies: impl IntoIterator<Item = (usize, &'a [u8])>,
) -> Vec<String> {
    let mut leaks = Vec::new();
    if let Some(form) = leaked_form(log, password) {
        leaks.push(format!("the password, as {form}"));
    }
    for (i, body) in bodies {
        if let Some(form) = leaked_form(log, body) {
            leaks.push(format!("the body of mail {i}, as {form}"));
        }
    }
    leaks
}

/// The first form in which `secret` appears in `log`, if any: `"text"`,
/// `"escaped text"`, `"decimal bytes"`, or `"hex"`; None when it appears
/// in none. The log is
/// text (read it with `String::from_utf8_lossy`): std's substring search
/// is fast even in a debug build, and trace logs are large.
///
/// ```
/// use archiver_core::conformance::leaks::leaked_form;
/// assert_eq!(leaked_form("frame Body(1, [104, 117, 110])", b"hun"), Some("decimal bytes"));
/// assert_eq!(leaked_form("key 68756e", b"hun"), Some("hex"));
/// assert_eq!(leaked_form(r#"body: b"hi\r\nthere\r\n""#, b"hi\r\nthere\r\n"), Some("escaped text"));
/// assert_eq!(leaked_form("pass=***", b"hun"), None);
/// ```
pub fn leaked_form(log: &str, secret: &[u8]) -> Option<&'static str> {
    let decimal = |separator: &str| {
        secret
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(separator)
    };
    let hex = |upper: bool, separator: &str| {
        secret
            .iter()
            .map(|b| match upper {
                true => format!("{b:02X}"),
                false => format!("{b:02x}"),
            })
            .collect::<Vec<_>>()
            .join(separator)
    };
    let forms: [(&'static str, String); 9] = [
        ("text", String::from_utf8_lossy(secret).into_owned()),
        (
            "escaped text",
            String::from_utf8_lossy(secret).escape_debug().to_string(),
        ),
        ("escaped text", secret.escape_ascii().to_string()),
        ("decimal bytes", decimal(", ")),
        ("decimal bytes", decimal(",")),
        ("hex", hex(false, "")),
        ("hex", hex(true, "")),
        ("hex", hex(false, " ")),
        ("hex", hex(true, " ")),
    ];
    forms
        .into_iter()
        .find(|(_, needle)| !needle.is_empty() && log.contains(needle.as_str()))
        .map(|(form, _)| form)
}
