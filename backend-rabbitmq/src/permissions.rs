//! Least-privilege broker users: the `rabbitmqctl` lines that make a
//! list server's user and an archive server's user from a [`Grant`].
//!
//! RabbitMQ checks three regular expressions per user and vhost
//! (configure, write, read: matched against object names) and, per topic
//! exchange, two more against routing keys (write, on publish) and binding
//! keys (read, on bind and unbind). A binding key is matched as **literal
//! text**: `*` and `#` are plain characters to the regex. So a read regex
//! must say which wildcards a binding may contain where, or `mail.#` would
//! pass a regex written for one list's labels; these are built from the
//! list-id label alphabet, with `*` allowed only where the grant has `*`
//! or `#`, and `#` only where it has `#`. Never `[^.]` or `.*`.
//!
//! | user | configure and write | read | topic write on `<p>` | topic read on `<p>` |
//! |---|---|---|---|---|
//! | list server | `<p>`, `<p>.unrouted` | the same | `<kind>.<class>.<list-id>` and the upgrade's `<kind>.<list-id>`, any list | none |
//! | archive server | its subscribers' objects, its tails' `amq.gen-*` | the same and `<p>` | none | its lists, in its classes |
//!
//! An archive server thus has no write on the default exchange (whose
//! name is empty: no regex here matches it), nor on `<p>`, cannot read or
//! bind `<p>.unrouted`, and its objects' names (`<p>.q.<name>`,
//! `<p>.dead.<name>`, `<p>.sub.<name>`, `<p>.x.<name>`,
//! `<p>.retry.<name>.<ms>[.quorum]`) match no other subscriber's regex,
//! dotted names included. It needs the list server to have declared `<p>`
//! first ([`crate::Role::ArchiveServer`]).

use std::fmt;

use archiver_core::{Grant, Kind, ListPattern, Prefix};

use crate::names::Classes;

/// One list-id label (letters, digits and `` !$%&'+-=?^_`{|}~ ``, as
/// [`archiver_core::ListId`] allows), never `*`, `#` or a dot. `$`, `'`
/// and `` ` `` are written `\xHH`: Debian's `rabbitmqctl` wrapper passes
/// its arguments through `sh -c` in double quotes, where they would not
/// survive.
const LABEL: &str = r"[A-Za-z0-9!\x24%&\x27+=?^_\x60{|}~-]+";

/// A server-named queue (a live tail's, exclusive to its connection).
const SERVER_NAMED: &str = r"amq\.gen-[A-Za-z0-9_-]+";

/// A regex that only the empty name or key matches: nothing this backend
/// uses, and not the default exchange's name for configure/write since
/// that one is checked apart (`amq.default`).
const NOTHING: &str = "^$";

/// The permissions of one broker user in one vhost, as `rabbitmqctl`
/// sets them. `Display` prints the lines, `add_user` reading the password
/// from its standard input (`printf '%s\n' "$PASSWORD" | ...`: a shell
/// builtin, so the password is in no process's command line, and never in
/// the output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSetup {
    /// The broker user name.
    pub user: String,
    /// The vhost.
    pub vhost: String,
    /// Regex of the objects it may declare and delete.
    pub configure: String,
    /// Regex of the objects it may publish to or bind to.
    pub write: String,
    /// Regex of the objects it may consume or bind from.
    pub read: String,
    /// The topic exchange the topic permissions are for (`<p>`).
    pub exchange: String,
    /// Regex of the routing keys it may publish to `exchange`.
    pub topic_write: String,
    /// Regex of the binding keys it may bind (or unbind) from `exchange`.
    pub topic_read: String,
}

impl UserSetup {
    /// The `rabbitmqctl` commands, one argument vector each (with
    /// `password`), in the order to run them.
    pub fn commands(&self, password: &str) -> Vec<Vec<String>> {
        let line = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        vec![
            line(&["rabbitmqctl", "add_user", &self.user, password]),
            line(&[
                "rabbitmqctl",
                "set_permissions",
                "-p",
                &self.vhost,
                &self.user,
                &self.configure,
                &self.write,
                &self.read,
            ]),
            line(&[
                "rabbitmqctl",
                "set_topic_permissions",
                "-p",
                &self.vhost,
                &self.user,
                &self.exchange,
                &self.topic_write,
                &self.topic_read,
            ]),
        ]
    }
}

/// Marks where the shell fills in the password.
const PASSWORD: &str = "\u{0}password";

impl fmt::Display for UserSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for command in self.commands(PASSWORD) {
            let piped = command.iter().any(|word| word == PASSWORD);
            if piped {
                write!(f, "printf '%s\\n' \"$PASSWORD\" | ")?;
            }
            let words: Vec<String> = command
                .iter()
                .filter(|word| word.as_str() != PASSWORD)
                .map(|word| match word.as_str() {
                    "rabbitmqctl"
                    | "add_user"
                    | "set_permissions"
                    | "set_topic_permissions"
                    | "-p" => word.clone(),
                    _ => shell_quote(word),
                })
                .collect();
            writeln!(f, "{}", words.join(" "))?;
        }
        Ok(())
    }
}

/// `text` in single quotes for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `text` as a regex matching it literally: letters, digits, `-` and `_`
/// as they are, a dot as `\.`, any other character as `\xHH` (so that no
/// shell quoting, Debian's `rabbitmqctl` wrapper's included, changes it).
fn literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => escaped.push(c),
            '.' => escaped.push_str("\\."),
            other => {
                for byte in other.to_string().bytes() {
                    escaped.push_str(&format!("\\x{byte:02x}"));
                }
            }
        }
    }
    escaped
}

/// The user a list server publishes as: it declares `<p>` and
/// `<p>.unrouted`, binds the one to the other, publishes to `<p>` with
/// `<kind>.<class>.<list-id>` keys, and binds nothing from `<p>`.
pub fn list_server(prefix: &Prefix, vhost: &str, user: &str) -> UserSetup {
    let own = format!("^{}(?:\\.unrouted|\\.layout)?$", literal(prefix));
    UserSetup {
        user: user.to_owned(),
        vhost: vhost.to_owned(),
        configure: own.clone(),
        write: own.clone(),
        read: own,
        exchange: prefix.as_str().to_owned(),
        // `<kind>.<class>.<list-id>`, and during the upgrade the earlier
        // `<kind>.<list-id>` it routes with (crate docs, Upgrading).
        topic_write: format!("^(?:mail|event)(?:\\.{LABEL})+$"),
        topic_read: NOTHING.to_owned(),
    }
}

/// The user an archive server runs as under `grant` (user name: the
/// grant's principal): its subscriber names' queues and exchanges, its
/// tails, and binding keys of its lists in the access classes it is
/// granted. An operator grant gets its own subscribers only: an operator
/// acting on others' dead letters uses an administrator's account.
pub fn archive_server(prefix: &Prefix, vhost: &str, grant: &Grant) -> UserSetup {
    let p = literal(prefix);
    let names: Vec<String> = grant
        .subscribers()
        .iter()
        .map(|n| literal(n.as_str()))
        .collect();
    let mut objects = Vec::new();
    if !names.is_empty() {
        let names = names.join("|");
        objects.push(format!("{p}\\.(?:q|dead|sub|x)\\.(?:{names})"));
        objects.push(format!("{p}\\.retry\\.(?:{names})\\.[0-9]+(?:\\.quorum)?"));
    }
    objects.push(SERVER_NAMED.to_owned());
    let own = format!("^(?:{})$", objects.join("|"));
    objects.push(p);
    let read = format!("^(?:{})$", objects.join("|"));
    UserSetup {
        user: grant.principal().to_owned(),
        vhost: vhost.to_owned(),
        configure: own.clone(),
        write: own,
        read,
        exchange: prefix.as_str().to_owned(),
        topic_write: NOTHING.to_owned(),
        topic_read: binding_keys(grant),
    }
}

/// The binding keys `grant` allows, as a regex over their literal text.
fn binding_keys(grant: &Grant) -> String {
    if grant.list_patterns().is_empty() {
        return NOTHING.to_owned();
    }
    let classes = Classes::granted(grant);
    let kinds: Vec<String> = [Kind::Mail, Kind::Event]
        .into_iter()
        .map(|kind| format!("{}\\.(?:{})", kind.as_str(), classes.of(kind).join("|")))
        .collect();
    let lists: Vec<String> = grant.list_patterns().iter().map(pattern_keys).collect();
    format!("^(?:{})(?:{})$", kinds.join("|"), lists.join("|"))
}

/// The list part of the binding keys a granted pattern allows, each label
/// with its leading dot: a literal label as itself, `*` as one label or a
/// `*`, `#` as any number of labels, `*` or `#`.
fn pattern_keys(pattern: &ListPattern) -> String {
    pattern
        .as_str()
        .split('.')
        .map(|label| match label {
            "*" => format!("\\.(?:{LABEL}|\\*)"),
            "#" => format!("(?:\\.(?:{LABEL}|\\*|#))*"),
            exact => format!("\\.{}", literal(exact)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant::new("public-archive")
            .subscriber("public-archive".parse().unwrap())
            .lists("*.lists.example.org".parse().unwrap())
    }

    #[test]
    fn the_lines_quote_everything_and_show_no_password() {
        let setup = archive_server(&"archiver".parse().unwrap(), "lists", &grant());
        let printed = setup.to_string();
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(
            lines[0],
            r#"printf '%s\n' "$PASSWORD" | rabbitmqctl add_user 'public-archive'"#
        );
        assert_eq!(
            lines[1],
            r"rabbitmqctl set_permissions -p 'lists' 'public-archive' '^(?:archiver\.(?:q|dead|sub|x)\.(?:public-archive)|archiver\.retry\.(?:public-archive)\.[0-9]+(?:\.quorum)?|amq\.gen-[A-Za-z0-9_-]+)$' '^(?:archiver\.(?:q|dead|sub|x)\.(?:public-archive)|archiver\.retry\.(?:public-archive)\.[0-9]+(?:\.quorum)?|amq\.gen-[A-Za-z0-9_-]+)$' '^(?:archiver\.(?:q|dead|sub|x)\.(?:public-archive)|archiver\.retry\.(?:public-archive)\.[0-9]+(?:\.quorum)?|amq\.gen-[A-Za-z0-9_-]+|archiver)$'"
        );
        assert_eq!(
            lines[2],
            r"rabbitmqctl set_topic_permissions -p 'lists' 'public-archive' 'archiver' '^$' '^(?:mail\.(?:public)|event\.(?:public))(?:\.(?:[A-Za-z0-9!\x24%&\x27+=?^_\x60{|}~-]+|\*)\.lists\.example\.org)$'"
        );
    }
}
