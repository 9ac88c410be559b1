//! Which envelopes a subscriber wants: lists (exact ids or patterns) and
//! kinds (mails, events).

use std::fmt;
use std::str::FromStr;

use crate::envelope::{Envelope, Kind};
use crate::list::{InvalidListId, ListId};

/// A list id or a pattern of dot-separated labels, with the AMQP topic
/// semantics so RabbitMQ can bind it as is: `*` matches exactly one label,
/// `#` matches zero or more labels.
///
/// ```
/// use archiver_core::{ListId, ListPattern};
/// let p: ListPattern = "*.lists.example.org".parse().unwrap();
/// assert!(p.matches(&ListId::new("dev.lists.example.org").unwrap()));
/// assert!(!p.matches(&ListId::new("a.b.lists.example.org").unwrap()));
/// let any: ListPattern = "#.example.org".parse().unwrap();
/// assert!(any.matches(&ListId::new("a.b.lists.example.org").unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListPattern {
    text: String,
    labels: Vec<Label>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Label {
    Exact(String),
    One,
    Any,
}

impl ListPattern {
    /// Parses a pattern; a plain list id is a pattern matching only itself.
    pub fn new(text: &str) -> Result<Self, InvalidListId> {
        let text = text.trim().to_ascii_lowercase();
        let labels = text
            .split('.')
            .map(|label| match label {
                "*" => Ok(Label::One),
                "#" => Ok(Label::Any),
                exact => ListId::new(exact).map(|_| Label::Exact(exact.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| InvalidListId {
                value: text.clone(),
                reason: e.reason,
            })?;
        Ok(Self { text, labels })
    }

    /// True when the pattern has no wildcard.
    pub fn is_exact(&self) -> bool {
        self.labels.iter().all(|l| matches!(l, Label::Exact(_)))
    }

    /// The pattern as written (lower-cased), e.g. `*.lists.example.org`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `list` is selected by this pattern.
    pub fn matches(&self, list: &ListId) -> bool {
        let labels: Vec<&str> = list.as_str().split('.').collect();
        matches_labels(&self.labels, &labels)
    }
}

fn matches_labels(pattern: &[Label], labels: &[&str]) -> bool {
    match pattern.split_first() {
        None => labels.is_empty(),
        Some((Label::Any, rest)) => {
            (0..=labels.len()).any(|skip| matches_labels(rest, &labels[skip..]))
        }
        Some((Label::One, rest)) => !labels.is_empty() && matches_labels(rest, &labels[1..]),
        Some((Label::Exact(e), rest)) => {
            labels.first() == Some(&e.as_str()) && matches_labels(rest, &labels[1..])
        }
    }
}

impl fmt::Display for ListPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for ListPattern {
    type Err = InvalidListId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl From<ListId> for ListPattern {
    fn from(id: ListId) -> Self {
        Self::new(id.as_str()).expect("a list id is a valid pattern")
    }
}

/// What a subscription receives. The default selects everything.
///
/// ```
/// use archiver_core::{Kind, Selection};
/// let selection = Selection::all()
///     .list("*.lists.example.org".parse().unwrap())
///     .only(Kind::Mail);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    lists: Vec<ListPattern>,
    kinds: Option<Kind>,
}

impl Selection {
    /// Every list, mails and events.
    pub fn all() -> Self {
        Self::default()
    }

    /// Adds a list or pattern; once one is added, only matching lists are
    /// selected.
    pub fn list(mut self, pattern: ListPattern) -> Self {
        self.lists.push(pattern);
        self
    }

    /// Restricts to one kind (mails only, or events only).
    pub fn only(mut self, kind: Kind) -> Self {
        self.kinds = Some(kind);
        self
    }

    /// The list patterns; empty means every list.
    pub fn lists(&self) -> &[ListPattern] {
        &self.lists
    }

    /// The kinds selected: both, or only one.
    pub fn kinds(&self) -> &'static [Kind] {
        match self.kinds {
            None => &[Kind::Mail, Kind::Event],
            Some(Kind::Mail) => &[Kind::Mail],
            Some(Kind::Event) => &[Kind::Event],
        }
    }

    /// The one kind selected, or None when both are.
    pub fn only_kind(&self) -> Option<Kind> {
        self.kinds
    }

    /// The list patterns as text, the form backends store and send.
    pub fn pattern_texts(&self) -> Vec<String> {
        self.lists.iter().map(|p| p.as_str().to_owned()).collect()
    }

    /// Rebuilds a selection from [`pattern_texts`](Self::pattern_texts) and
    /// [`only_kind`](Self::only_kind); the first invalid pattern is the
    /// error.
    pub fn from_texts<S: AsRef<str>>(
        lists: impl IntoIterator<Item = S>,
        kind: Option<Kind>,
    ) -> Result<Self, InvalidListId> {
        let lists = lists
            .into_iter()
            .map(|text| ListPattern::new(text.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { lists, kinds: kind })
    }

    /// Whether a list is selected, whatever the kind.
    pub fn selects_list(&self, list: &ListId) -> bool {
        self.lists.is_empty() || self.lists.iter().any(|p| p.matches(list))
    }

    /// Whether an envelope is selected.
    pub fn matches(&self, envelope: &Envelope) -> bool {
        self.kinds().contains(&envelope.kind) && self.selects_list(&envelope.list_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ListId {
        ListId::new(s).unwrap()
    }

    #[test]
    fn wildcards_follow_amqp_topic_rules() {
        let one: ListPattern = "*.example.org".parse().unwrap();
        assert!(one.matches(&id("dev.example.org")));
        assert!(!one.matches(&id("example.org")));
        assert!(!one.matches(&id("a.dev.example.org")));
        let any: ListPattern = "#.example.org".parse().unwrap();
        assert!(any.matches(&id("example.org")));
        assert!(any.matches(&id("a.dev.example.org")));
        assert!(!any.matches(&id("example.com")));
        let exact: ListPattern = "Dev.Example.org".parse().unwrap();
        assert!(exact.is_exact() && exact.matches(&id("dev.example.org")));
        assert!(ListPattern::new("a..b").is_err());
        assert!(ListPattern::new("a.b c").is_err());
    }

    #[test]
    fn empty_selection_selects_everything() {
        let s = Selection::all();
        assert!(s.selects_list(&id("x.y")));
        assert_eq!(s.kinds(), &[Kind::Mail, Kind::Event]);
        let s = Selection::all()
            .list("a.y".parse().unwrap())
            .only(Kind::Event);
        assert!(s.selects_list(&id("a.y")) && !s.selects_list(&id("b.y")));
        assert_eq!(s.kinds(), &[Kind::Event]);
    }

    #[test]
    fn texts_round_trip() {
        let s = Selection::all()
            .list("*.example.org".parse().unwrap())
            .list("a.y".parse().unwrap())
            .only(Kind::Mail);
        let back = Selection::from_texts(s.pattern_texts(), s.only_kind()).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            Selection::from_texts(Vec::<String>::new(), None).unwrap(),
            Selection::all()
        );
        assert!(Selection::from_texts(["no/slash"], None).is_err());
    }
}
