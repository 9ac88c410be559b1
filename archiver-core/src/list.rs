//! Mailing lists as the archiver sees them: an RFC 2919 List-Id, the
//! list's posting address and its archive policy.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string was refused as a list id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid list id {value:?}: {reason}")]
pub struct InvalidListId {
    /// The refused input.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// An RFC 2919 list identifier such as `dev.lists.example.org`, the key every
/// backend routes on.
///
/// Stored lower-cased (Mailman's list ids are lower case and List-Id
/// comparison is case-insensitive). Dot-separated non-empty labels of
/// `atext` without `*` and `#`, which are reserved for
/// [`ListPattern`](crate::ListPattern) wildcards so that an id can never be
/// mistaken for a pattern on a broker, and without `/`, so that an archive
/// can use the id as a file name (no label is empty, so never `..` either).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListId(String);

/// Longest list id accepted: keeps broker names (queues, stream keys,
/// routing keys of at most 255 bytes) within their limits.
pub const MAX_LIST_ID_LEN: usize = 200;

impl ListId {
    /// Validates and normalises `value`; surrounding `<>` and whitespace are
    /// removed so a raw List-Id header value can be passed.
    pub fn new(value: &str) -> Result<Self, InvalidListId> {
        let trimmed = value.trim();
        let bare = trimmed
            .strip_prefix('<')
            .and_then(|v| v.strip_suffix('>'))
            .unwrap_or(trimmed);
        let fail = |reason| InvalidListId {
            value: value.to_owned(),
            reason,
        };
        if bare.is_empty() {
            return Err(fail("empty"));
        }
        if bare.len() > MAX_LIST_ID_LEN {
            return Err(fail("longer than 200 bytes"));
        }
        if bare.split('.').any(str::is_empty) {
            return Err(fail("empty label (leading, trailing or doubled dot)"));
        }
        if !bare.bytes().all(|b| b == b'.' || is_list_id_byte(b)) {
            return Err(fail(
                "only letters, digits and !$%&'+-=?^_`{|}~ are allowed between dots",
            ));
        }
        Ok(Self(bare.to_ascii_lowercase()))
    }

    /// The id as text, e.g. `dev.lists.example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Reads the list id out of a List-Id header value such as
    /// `"Developers" <dev.lists.example.org>`: the text inside the last
    /// angle brackets, or the whole value when there are none.
    pub fn from_header(value: &str) -> Result<Self, InvalidListId> {
        let inner = match (value.rfind('<'), value.rfind('>')) {
            (Some(open), Some(close)) if open < close => &value[open + 1..close],
            _ => value,
        };
        Self::new(inner)
    }
}

/// RFC 5322 `atext` minus the wildcards `*`, `#` and the path separator `/`.
fn is_list_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!$%&'+-=?^_`{|}~".contains(&b)
}

impl fmt::Display for ListId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ListId {
    type Err = InvalidListId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ListId {
    type Error = InvalidListId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<ListId> for String {
    fn from(id: ListId) -> Self {
        id.0
    }
}

/// Mailman's archive policy: who may read a list's archive, or whether it
/// is archived at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ArchivePolicy {
    /// Not archived: [`Archiver::archive_message`](crate::Archiver::archive_message)
    /// skips every mail of the list.
    Never,
    /// Archived for list members only; archive servers must not publish it.
    Private,
    /// Archived and readable by anyone.
    #[default]
    Public,
}

impl ArchivePolicy {
    /// The lower-case name used on the wire (`public`, `private`, `never`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::Private => "private",
            Self::Public => "public",
        }
    }
}

impl FromStr for ArchivePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "never" => Ok(Self::Never),
            "private" => Ok(Self::Private),
            "public" => Ok(Self::Public),
            other => Err(format!("unknown archive policy {other:?}")),
        }
    }
}

/// Why a string was refused as a list's posting address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid list address {value:?}: {reason}")]
pub struct InvalidListAddress {
    /// The refused input.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Longest posting address accepted: RFC 5321's limit on a path.
pub const MAX_LIST_ADDRESS_LEN: usize = 254;

/// A list's posting address, e.g. `dev@lists.example.org`: how HyperKitty
/// and other archives key a list, which cannot be derived from its
/// [`ListId`].
///
/// An RFC 5321 address without quoting or comments, as Mailman gives a
/// list's `posting_address`: a dot-atom local part (letters, digits and
/// ``!#$%&'*+-/=?^_`{|}~`` between dots), `@`, and a domain of letters,
/// digits and `-` between dots, at most 254 bytes. Stored lower-cased, as
/// Mailman stores list names and domains.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListAddress(String);

impl ListAddress {
    /// Validates and normalises `value` (surrounding whitespace removed,
    /// lower-cased).
    pub fn new(value: &str) -> Result<Self, InvalidListAddress> {
        let fail = |reason| InvalidListAddress {
            value: value.to_owned(),
            reason,
        };
        let bare = value.trim();
        if bare.len() > MAX_LIST_ADDRESS_LEN {
            return Err(fail("longer than 254 bytes"));
        }
        let Some((local, domain)) = bare.rsplit_once('@') else {
            return Err(fail("no @"));
        };
        let dot_atom = |part: &str, allowed: fn(u8) -> bool| {
            part.split('.')
                .all(|label| !label.is_empty() && label.bytes().all(allowed))
        };
        if !dot_atom(local, |b| {
            b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
        }) {
            return Err(fail(
                "the local part must be letters, digits and !#$%&'*+-/=?^_`{|}~ between dots",
            ));
        }
        if !dot_atom(domain, |b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(fail(
                "the domain must be letters, digits and - between dots",
            ));
        }
        Ok(Self(bare.to_ascii_lowercase()))
    }

    /// The address as text, e.g. `dev@lists.example.org`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ListAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ListAddress {
    type Err = InvalidListAddress;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ListAddress {
    type Error = InvalidListAddress;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<ListAddress> for String {
    fn from(address: ListAddress) -> Self {
        address.0
    }
}

/// The list a mail was posted to, as the list server knows it (Mailman's
/// `mlist` argument to `IArchiver`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailingList {
    /// The list's RFC 2919 id.
    pub list_id: ListId,
    /// Whether and for whom the list is archived.
    pub archive_policy: ArchivePolicy,
    /// The list's posting address, when the list server gives it: every
    /// envelope of the list carries it (`list-address` on the wire).
    pub list_address: Option<ListAddress>,
}

impl MailingList {
    /// A public list with the given id and no posting address.
    pub fn public(list_id: ListId) -> Self {
        Self {
            list_id,
            archive_policy: ArchivePolicy::Public,
            list_address: None,
        }
    }

    /// The same list with its posting address, so that archives can key
    /// it as HyperKitty does.
    ///
    /// ```
    /// use archiver_core::{ListId, MailingList};
    /// let list = MailingList::public(ListId::new("dev.lists.example.org")?)
    ///     .with_address("dev@lists.example.org")?;
    /// assert_eq!(list.list_address.unwrap().as_str(), "dev@lists.example.org");
    /// assert!(MailingList::public(ListId::new("dev.lists.example.org")?)
    ///     .with_address("not an address")
    ///     .is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_address(mut self, address: &str) -> Result<Self, InvalidListAddress> {
        self.list_address = Some(ListAddress::new(address)?);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_brackets_case_and_whitespace() {
        let id = ListId::new("  <Dev.Lists.Example.ORG> ").unwrap();
        assert_eq!(id.as_str(), "dev.lists.example.org");
    }

    #[test]
    fn reads_rfc2919_header_values() {
        let id = ListId::from_header("\"Use and development\" <notmuch.notmuchmail.org>").unwrap();
        assert_eq!(id.as_str(), "notmuch.notmuchmail.org");
        let id = ListId::from_header("linux-kernel.vger.kernel.org").unwrap();
        assert_eq!(id.as_str(), "linux-kernel.vger.kernel.org");
    }

    #[test]
    fn refuses_wildcards_spaces_and_empty_labels() {
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "*.example.org",
            "a#b",
            "a b",
            "ü.org",
        ] {
            assert!(ListId::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ListId::new(&"a".repeat(201)).is_err());
    }

    #[test]
    fn list_addresses_are_checked_and_lower_cased() {
        let address = ListAddress::new(" Dev-Team+x@Lists.Example.ORG ").unwrap();
        assert_eq!(address.as_str(), "dev-team+x@lists.example.org");
        for bad in [
            "",
            "dev",
            "@lists.example.org",
            "dev@",
            "dev@lists..example.org",
            "dev.@example.org",
            "d ev@example.org",
            "dev@exa_mple.org",
            "dev@example.org\r\nx: y",
            "\"dev\"@example.org",
            "dév@example.org",
        ] {
            assert!(
                matches!(ListAddress::new(bad), Err(InvalidListAddress { .. })),
                "{bad:?} was accepted"
            );
        }
        let long = format!("{}@example.org", "a".repeat(243));
        assert!(ListAddress::new(&long).is_err());
        assert!(ListAddress::new(&long[1..]).is_ok());
    }

    #[test]
    fn serde_round_trip_validates() {
        let id: ListId = serde_json::from_str("\"a.example.org\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"a.example.org\"");
        assert!(serde_json::from_str::<ListId>("\"a..b\"").is_err());
    }
}
