//! Credentials never reach a log or an error message: URLs are shown with
//! their password replaced.

/// The URL with its password replaced by `***`; text that is not a URL is
/// not shown at all (it might be a password typed in the wrong place).
///
/// ```
/// use archiver_core::redact_url;
/// assert_eq!(redact_url("amqp://archiver:s3cret@rabbit/lists"), "amqp://archiver:***@rabbit/lists");
/// assert_eq!(redact_url("s3cret"), "<unparseable URL>");
/// ```
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "<unparseable URL>".into(),
    }
}
