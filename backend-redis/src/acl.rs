//! Redis ACL users for a deployment, made from [`Grant`]s: the exact
//! `ACL SETUSER` lines for the list server's user and for each archive
//! server's, so that Redis itself refuses (NOPERM) what a grant does not
//! allow.
//!
//! An archive server's user may read only the streams of its grant's
//! access classes and lists (key names carry both: the crate docs, Layout) and
//! write only its own subscribers' keys (record, dead letters, replay,
//! delayed retries) and group state on the streams it reads. It may not
//! XADD, XTRIM or XDEL a list stream, nor `XGROUP SETID`, `DESTROY`,
//! `DELCONSUMER`, nor `XAUTOCLAIM`, nor run scripts, `CONFIG` or `KEYS`;
//! trimming, unsubscribing and removing consumers are the list server's.
//!
//! What Redis ACLs cannot do: restrict consumer-group names. Principals
//! granted the same stream can read through each other's groups and
//! `XACK` / `XCLAIM` each other's entries there, making the other skip
//! them; `XCLAIM ... LASTID` moves another's group position ahead, and
//! `XGROUP CREATE ... MKSTREAM` under another's name at `$` on a stream
//! it has not found yet makes it start there. Private lists' streams are therefore shared only among the
//! principals granted them; public streams among every archive server.
//!
//! Grants become key patterns only as exact list ids (one key per stream)
//! or `#` alone (every list of the granted classes: one glob per class and
//! content); a pattern with a wildcard inside (`*.lists.example.org`) has
//! no glob with the same meaning (a Redis glob's `*` crosses dots) and is
//! refused. Each user's permissions are one `ACL SETUSER` command (every
//! selector in it): Redis applies it whole, so running it again never
//! leaves a running archive server with its permissions half reset. The
//! line sets no password: add one with `ACL SETUSER <user> on >password`;
//! running the line again resets the user's permissions, never its
//! password. A database number in the URL needs `+select` added.

use std::fmt;

use archiver_core::{Grant, Prefix};

use crate::keys::{Class, Content, Keys};

/// A grant that has no Redis ACL with the same meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UngrantableGrant(pub String);

impl fmt::Display for UngrantableGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UngrantableGrant {}

/// Commands every user runs that name no key: connecting (`PING`), the
/// server's clock (`TIME`), its run id and persistence (`INFO`), and
/// atomic groups of commands (`MULTI`/`EXEC`).
const KEYLESS: &str = "+ping +time +info +multi +exec +discard";

/// Resets a user's permissions (not its password) before granting.
const RESET: &str = "on resetkeys resetchannels clearselectors nocommands";

/// Every command the list server's client runs, on every key of the prefix.
const LIST_SERVER_COMMANDS: &str = "+scan +exists +get +set +mget +del +unlink \
    +sadd +smembers +srem +hgetall +zadd +zrange +zrangebyscore +zrem +zmscore \
    +xadd +xtrim +xdel +xlen +xrange +xrevrange +xread +xreadgroup +xack +xclaim +xpending \
    +xinfo +xgroup +eval +wait";

/// The `ACL SETUSER` lines of the list server's user `user`: every key of
/// the prefix, the commands the backend runs (publishing, trimming,
/// migrating, the operator's actions). `Durability::Fsync` also needs
/// `+waitaof +command|info` (Redis 7.2 or later).
pub fn list_server_acl_lines(prefix: &Prefix, user: &str) -> Result<Vec<String>, UngrantableGrant> {
    check_user(user)?;
    Ok(vec![format!(
        "ACL SETUSER {user} {RESET} {KEYLESS} {LIST_SERVER_COMMANDS} ~{prefix}:*"
    )])
}

/// The `ACL SETUSER` line (one) of an archive server's user, named after
/// the grant's principal: what it may read and write, as described in the
/// module docs, in one command so re-applying it is atomic. Refused: an operator grant (on Redis, operators use the
/// list server's user), a principal that is no plain user name, a list
/// pattern other than an exact id or `#`.
pub fn acl_setuser_lines(prefix: &Prefix, grant: &Grant) -> Result<Vec<String>, UngrantableGrant> {
    let user = grant.principal();
    check_user(user)?;
    if grant.is_operator() {
        return Err(UngrantableGrant(format!(
            "grant of {user:?}: operators act through the list server's Redis user"
        )));
    }
    let keys = Keys::new(prefix);
    let mut every_list = false;
    let mut lists = Vec::new();
    for pattern in grant.list_patterns() {
        if pattern.as_str() == "#" {
            every_list = true;
        } else if pattern.is_exact() && !pattern.as_str().contains('\'') {
            lists.push(pattern.as_str());
        } else if pattern.is_exact() {
            // Redis splits a selector's text as redis-cli does, quotes
            // included, and list ids may hold `'`.
            return Err(UngrantableGrant(format!(
                "grant of {user:?}: list id {:?} holds a quote, which a Redis ACL selector cannot name",
                pattern.as_str()
            )));
        } else {
            return Err(UngrantableGrant(format!(
                "grant of {user:?}: list pattern {:?} has no Redis ACL key pattern; grant exact list ids, or # for every list of the granted classes",
                pattern.as_str()
            )));
        }
    }
    let classes: &[Class] = if grant.allows_private_lists() {
        &Class::ALL
    } else {
        &[Class::Public]
    };
    let contents: &[Content] = if grant.allows_membership_events() {
        &Content::ALL
    } else {
        &[Content::Mail, Content::Event]
    };
    let mut streams = Vec::new();
    let mut registry = Vec::new();
    for &class in classes {
        for &content in contents {
            let stem = glob_escape(&keys.stream_stem(class, content));
            if every_list {
                streams.push(format!("~{stem}*"));
                registry.push(format!("~{}", glob_escape(&keys.lists(class, content))));
            } else {
                streams.extend(
                    lists
                        .iter()
                        .map(|l| format!("~{stem}{{{}}}", glob_escape(l))),
                );
            }
        }
    }
    let own = |key: &dyn Fn(&archiver_core::SubscriberName) -> String| -> Vec<String> {
        grant
            .subscribers()
            .iter()
            .map(|name| format!("~{}", glob_escape(&key(name))))
            .collect()
    };
    let replay = own(&|n| keys.replay(n));
    // One command: Redis applies an ACL SETUSER whole, so re-running it
    // never leaves a running archive server with the reset applied and
    // its selectors not yet (NOPERM in between).
    let mut line = format!("ACL SETUSER {user} {RESET} {KEYLESS}");
    let mut selector = |commands: &str, patterns: &[String]| {
        if !patterns.is_empty() {
            line.push_str(&format!(" ({commands} {})", patterns.join(" ")));
        }
    };
    // One selector for every stream it reads through its groups: a single
    // XREADGROUP names the replay stream and the list streams together.
    let read: Vec<String> = streams.iter().chain(&replay).cloned().collect();
    selector(
        "+xreadgroup +xpending +xclaim +xack +xgroup|create +xread +xrevrange",
        &read,
    );
    selector("+smembers", &registry);
    let dead: Vec<String> = own(&|n| keys.dead(n)).into_iter().chain(replay).collect();
    selector("+xadd +xdel +xrange +xlen +del", &dead);
    selector(
        "+zadd +zrangebyscore +zrem +zmscore",
        &own(&|n| keys.delayed(n)),
    );
    selector("+get +set", &own(&|n| keys.subscriber(n)));
    Ok(vec![line])
}

/// A user name ACL SETUSER and redis-cli take as one plain word.
fn check_user(user: &str) -> Result<(), UngrantableGrant> {
    let plain = !user.is_empty()
        && !user.starts_with(['(', '>', '<', '#', '~', '%', '&', '+', '-'])
        && user
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '\\'));
    if plain {
        Ok(())
    } else {
        Err(UngrantableGrant(format!(
            "{user:?} is no plain Redis user name (printable ASCII, no quotes, not starting with an ACL rule's sign)"
        )))
    }
}

/// A key glob matching exactly this text (list ids may hold `?`).
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(json: &str) -> Grant {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_public_grant_reads_public_streams_and_writes_only_its_own_keys() {
        let lines = acl_setuser_lines(
            &"p".parse().unwrap(),
            &grant(r##"{"principal":"pub","subscribers":["pub"],"lists":["#"]}"##),
        )
        .unwrap();
        assert_eq!(
            lines,
            [concat!(
                "ACL SETUSER pub on resetkeys resetchannels clearselectors nocommands +ping +time +info +multi +exec +discard",
                " (+xreadgroup +xpending +xclaim +xack +xgroup|create +xread +xrevrange ~p:stream:public:mail:* ~p:stream:public:event:* ~p:replay:pub)",
                " (+smembers ~p:lists:public:mail ~p:lists:public:event)",
                " (+xadd +xdel +xrange +xlen +del ~p:dead:pub ~p:replay:pub)",
                " (+zadd +zrangebyscore +zrem +zmscore ~p:delayed:pub)",
                " (+get +set ~p:sub:pub)",
            )],
            "one command: re-applying it is atomic"
        );
    }

    #[test]
    fn exact_lists_are_exact_keys_and_globs_in_labels_are_refused() {
        let lines = acl_setuser_lines(
            &"p".parse().unwrap(),
            &grant(
                r#"{"principal":"b","subscribers":["b"],"lists":["what?.example.org"],"private_lists":true,"membership_events":true}"#,
            ),
        )
        .unwrap();
        assert!(
            lines[0].contains(r"~p:stream:private:members:{what\?.example.org}"),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.contains("smembers")), "{lines:?}");
        let refused = acl_setuser_lines(
            &"p".parse().unwrap(),
            &grant(r#"{"principal":"b","lists":["*.example.org"]}"#),
        )
        .unwrap_err();
        assert!(
            refused
                .0
                .contains("\"*.example.org\" has no Redis ACL key pattern"),
            "{refused}"
        );
        let operator = acl_setuser_lines(
            &"p".parse().unwrap(),
            &grant(r##"{"principal":"ops","lists":["#"],"operator":true}"##),
        );
        assert!(operator.is_err());
        assert!(list_server_acl_lines(&"p".parse().unwrap(), "has space").is_err());
        let quoted = acl_setuser_lines(
            &"p".parse().unwrap(),
            &grant(r#"{"principal":"b","lists":["o'neil.example.org"]}"#),
        )
        .unwrap_err();
        assert!(quoted.0.contains("holds a quote"), "{quoted}");
    }
}
