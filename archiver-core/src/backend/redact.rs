//! Credentials never reach a log or an error message: URLs are shown with
//! every credential replaced.

/// Query parameters that carry a credential, compared without case:
/// redis-rs reads `user` and `pass` for `redis+unix://`, other clients
/// spell them out or pass a token.
const CREDENTIAL_PARAMETERS: [&str; 7] = [
    "pass", "password", "user", "username", "token", "secret", "auth",
];

/// What a credential is replaced with.
const HIDDEN: &str = "***";

/// The URL with every credential replaced by `***`: the userinfo password;
/// a userinfo name given without a password (it may be a password that
/// lost its colon); the value of every query parameter that names a
/// credential (`pass`, `password`, `user`, `username`, `token`, `secret`,
/// `auth`); everything after the scheme of a URL whose `//` was forgotten
/// (`amqp:user:secret@host`). Text that is not a URL
/// is not shown at all (it might be a password typed in the wrong place).
///
/// ```
/// use archiver_core::redact_url;
/// assert_eq!(redact_url("amqp://archiver:s3cret@rabbit/lists"), "amqp://archiver:***@rabbit/lists");
/// assert_eq!(redact_url("redis+unix:///run/redis.sock?pass=s3cret"), "redis+unix:///run/redis.sock?pass=***");
/// assert_eq!(redact_url("s3cret"), "<unparseable URL>");
/// ```
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "<unparseable URL>".into();
    };
    if url.cannot_be_a_base() && url.path().contains(['@', ':']) {
        // `amqp:user:secret@host`, the `//` forgotten: no userinfo to
        // replace, so nothing after the scheme is shown.
        return format!("{}:{HIDDEN}", url.scheme());
    }
    if url.password().is_some() {
        let _ = url.set_password(Some(HIDDEN));
    } else if !url.username().is_empty() {
        let _ = url.set_username(HIDDEN);
    }
    let is_credential = |name: &str| {
        CREDENTIAL_PARAMETERS
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    };
    if url.query_pairs().any(|(name, _)| is_credential(&name)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_credential(&name) {
                    HIDDEN.to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every place a URL can carry a credential: the userinfo password, a
    /// lone userinfo name (a password without its colon), and the query
    /// parameters clients read credentials from (redis-rs reads `user` and
    /// `pass` for `redis+unix://`).
    #[test]
    fn every_credential_form_is_replaced() {
        let cases = [
            (
                "amqp://archiver:hunter2@rabbit/lists",
                "amqp://archiver:***@rabbit/lists",
            ),
            (
                "redis://:hunter2@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            ("rediss://hunter2@host:6380", "rediss://***@host:6380"),
            ("amqp://u:hunt%40er2@h/v", "amqp://u:***@h/v"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=hunter2",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            (
                "redis+unix:///run/redis.sock?user=hunter2&pass=hunter2",
                "redis+unix:///run/redis.sock?user=***&pass=***",
            ),
            (
                "unix:///run/redis.sock?password=hunter2",
                "unix:///run/redis.sock?password=***",
            ),
            (
                "redis://h/?username=hunter2&Password=hunter2&token=hunter2&secret=hunter2",
                "redis://h/?username=***&Password=***&token=***&secret=***",
            ),
            (
                "redis://127.0.0.1:6379?protocol=resp3",
                "redis://127.0.0.1:6379?protocol=resp3",
            ),
            ("hunter2", "<unparseable URL>"),
            ("amqp:archiver:hunter2@rabbit/lists", "amqp:***"),
            ("redis:hunter2@127.0.0.1", "redis:***"),
            ("memory:lists", "memory:lists"),
        ];
        for (raw, shown) in cases {
            assert_eq!(redact_url(raw), shown, "for {raw:?}");
        }
    }
}
