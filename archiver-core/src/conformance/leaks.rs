//! Finding a secret or a mail body in captured log output in every form a
//! `Debug` can print bytes: as text, as a decimal byte list (lapin's
//! `Body(1, [77, 101, ...])`), or as hex. Used by the log-capture tests,
//! which run real processes at `RUST_LOG=trace`.

/// The first form in which `secret` appears in `log`, if any: `"text"`,
/// `"decimal bytes"`, or `"hex"`; None when it appears in none. The log is
/// text (read it with `String::from_utf8_lossy`): std's substring search
/// is fast even in a debug build, and trace logs are large.
///
/// ```
/// use archiver_core::conformance::leaks::leaked_form;
/// assert_eq!(leaked_form("frame Body(1, [104, 117, 110])", b"hun"), Some("decimal bytes"));
/// assert_eq!(leaked_form("key 68756e", b"hun"), Some("hex"));
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
    let forms: [(&'static str, String); 7] = [
        ("text", String::from_utf8_lossy(secret).into_owned()),
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
