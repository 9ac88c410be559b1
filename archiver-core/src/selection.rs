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

/// Most labels a pattern may have. A list id has at most 100 (200 bytes,
/// labels of one byte and dots), so a longer pattern could only match by
/// way of `#`s, and every label costs matching time on every envelope.
pub const MAX_PATTERN_LABELS: usize = 32;

/// Most list patterns in one selection: a selection is matched against
/// every envelope of the journal, so a peer must not make that unbounded.
pub const MAX_SELECTION_PATTERNS: usize = 1024;

/// Most labels a list id can have (one-byte labels and dots).
const MAX_LIST_ID_LABELS: usize = crate::list::MAX_LIST_ID_LEN.div_ceil(2);

impl ListPattern {
    /// Parses a pattern; a plain list id is a pattern matching only itself.
    /// Refused: more than [`MAX_PATTERN_LABELS`] labels, or more bytes than
    /// a list id may have.
    pub fn new(text: &str) -> Result<Self, InvalidListId> {
        let text = text.trim().to_ascii_lowercase();
        let refuse = |reason| InvalidListId {
            value: text.chars().take(64).collect(),
            reason,
        };
        if text.split('.').count() > MAX_PATTERN_LABELS {
            return Err(refuse("a pattern has more than 32 labels"));
        }
        if text.len() > crate::list::MAX_LIST_ID_LEN {
            return Err(refuse("a pattern is longer than 200 bytes"));
        }
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
        self.matches_counting(list, &mut 0)
    }

    /// Whether every list `narrower` matches is matched by this pattern too:
    /// how a grant of `*.lists.example.org` is told to accept a selection of
    /// `dev.lists.example.org` and refuse `#`.
    ///
    /// Sound, not complete: a true answer is always right, but a few
    /// equivalent spellings are refused (`*.#` is not found inside `#.*`),
    /// which errs on the side of refusing access.
    ///
    /// ```
    /// use archiver_core::ListPattern;
    /// let grant: ListPattern = "*.lists.example.org".parse().unwrap();
    /// assert!(grant.covers(&"dev.lists.example.org".parse().unwrap()));
    /// assert!(!grant.covers(&"#".parse().unwrap()));
    /// assert!(!grant.covers(&"*.*.lists.example.org".parse().unwrap()));
    /// ```
    pub fn covers(&self, narrower: &ListPattern) -> bool {
        covers_labels(&self.labels, &narrower.labels)
    }

    /// [`matches`](Self::matches), adding the matcher's steps to `steps`.
    fn matches_counting(&self, list: &ListId, steps: &mut usize) -> bool {
        if self.is_exact() {
            *steps += 1;
            return self.text == list.as_str();
        }
        matches_labels(&self.labels, list.as_str().split('.'), steps)
    }
}

/// Pattern containment by dynamic programming over (wide label, narrow
/// label), as [`matches_labels`] does for a list: `row[j]` says whether the
/// wide pattern's labels so far cover the narrow one's first `j`. A `#` of
/// the wide pattern absorbs any run of narrow labels; a `*` covers one `*`
/// or exact label; an exact label covers only itself; a narrow `#` is
/// covered only by a wide `#`.
fn covers_labels(wide: &[Label], narrow: &[Label]) -> bool {
    let mut row = vec![false; narrow.len() + 1];
    row[0] = true;
    for label in wide {
        let mut next = vec![false; narrow.len() + 1];
        for j in 0..=narrow.len() {
            next[j] = match (label, j.checked_sub(1).map(|i| &narrow[i])) {
                (Label::Any, _) => row[j] || (j > 0 && next[j - 1]),
                (_, None) => false,
                (Label::One, Some(Label::One | Label::Exact(_))) => row[j - 1],
                (Label::Exact(w), Some(Label::Exact(n))) => row[j - 1] && w == n,
                _ => false,
            };
        }
        row = next;
    }
    row[narrow.len()]
}

/// Label matching by dynamic programming over (pattern label, list label):
/// `row[j]` says whether the pattern's labels so far match the list's
/// first `j` labels. One pass per pattern label, so at most
/// (pattern labels) × (list labels + 1) steps, never backtracking.
fn matches_labels<'a>(
    pattern: &[Label],
    labels: impl Iterator<Item = &'a str>,
    steps: &mut usize,
) -> bool {
    let mut list = [""; MAX_LIST_ID_LABELS];
    let mut len = 0;
    for label in labels {
        list[len] = label;
        len += 1;
    }
    let list = &list[..len];
    let mut row = [false; MAX_LIST_ID_LABELS + 1];
    row[0] = true;
    for label in pattern {
        let mut next = [false; MAX_LIST_ID_LABELS + 1];
        for j in 0..=list.len() {
            *steps += 1;
            next[j] = match label {
                Label::Any => row[j] || (j > 0 && next[j - 1]),
                Label::One => j > 0 && row[j - 1],
                Label::Exact(e) => j > 0 && row[j - 1] && list[j - 1] == e,
            };
        }
        row = next;
    }
    row[list.len()]
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
    /// error, and so are more than [`MAX_SELECTION_PATTERNS`] patterns.
    pub fn from_texts<S: AsRef<str>>(
        lists: impl IntoIterator<Item = S>,
        kind: Option<Kind>,
    ) -> Result<Self, InvalidListId> {
        let lists = lists
            .into_iter()
            .map(|text| ListPattern::new(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if lists.len() > MAX_SELECTION_PATTERNS {
            return Err(InvalidListId {
                value: format!("{} patterns", lists.len()),
                reason: "a selection has more than 1024 patterns",
            });
        }
        Ok(Self { lists, kinds: kind })
    }

    /// Whether a list is selected, whatever the kind.
    pub fn selects_list(&self, list: &ListId) -> bool {
        self.lists.is_empty() || self.lists.iter().any(|p| p.matches(list))
    }

    /// Whether an envelope is selected.
    pub fn matches(&self, envelope: &Envelope) -> bool {
        self.selects(envelope.kind, &envelope.list_id)
    }

    /// Whether an envelope of this kind and list is selected: what
    /// [`Self::matches`] reads of an envelope, for a router that keeps
    /// those beside the envelope's bytes and so need not decode it.
    pub fn selects(&self, kind: Kind, list: &ListId) -> bool {
        self.kinds().contains(&kind) && self.selects_list(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ListId {
        ListId::new(s).unwrap()
    }

    /// Every dot-joined word of 1 to `max` labels from `alphabet`.
    fn words(alphabet: &[&str], max: usize) -> Vec<String> {
        let mut all: Vec<String> = alphabet.iter().map(|l| (*l).to_owned()).collect();
        let mut last = all.clone();
        for _ in 1..max {
            last = last
                .iter()
                .flat_map(|w| alphabet.iter().map(move |l| format!("{w}.{l}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// Over every pair of short patterns: whenever `covers` says yes, every
    /// list the narrower one matches is matched by the wider one (so a
    /// grant never lets more through than it says); for a plain list id
    /// it says yes exactly when the wider pattern matches that id; and it
    /// finds the common cases (`#` covers all, a pattern covers itself).
    #[test]
    fn covers_never_claims_a_list_the_wider_pattern_does_not_match() {
        let patterns: Vec<ListPattern> = words(&["a", "b", "*", "#"], 3)
            .iter()
            .map(|w| w.parse().unwrap())
            .collect();
        let lists: Vec<ListId> = words(&["a", "b", "c"], 4).iter().map(|w| id(w)).collect();
        let everything: ListPattern = "#".parse().unwrap();
        for wide in &patterns {
            for narrow in &patterns {
                if wide.covers(narrow) {
                    for list in lists.iter().filter(|l| narrow.matches(l)) {
                        assert!(wide.matches(list), "{wide} covers {narrow} but not {list}");
                    }
                }
                if narrow.is_exact() {
                    assert_eq!(
                        wide.covers(narrow),
                        wide.matches(&id(narrow.as_str())),
                        "{wide} / {narrow}"
                    );
                }
            }
            assert!(wide.covers(wide), "{wide}");
            assert!(everything.covers(wide), "{wide}");
        }
        let grant: ListPattern = "*.lists.example.org".parse().unwrap();
        assert!(grant.covers(&"*.lists.example.org".parse().unwrap()));
        assert!(!grant.covers(&"#.lists.example.org".parse().unwrap()));
        assert!(!grant.covers(&"*.example.org".parse().unwrap()));
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
        let at_cap = vec!["a.example.org"; MAX_SELECTION_PATTERNS];
        assert!(Selection::from_texts(&at_cap, None).is_ok());
        let over_cap = vec!["a.example.org"; MAX_SELECTION_PATTERNS + 1];
        assert!(Selection::from_texts(&over_cap, None).is_err());
    }

    #[test]
    fn patterns_over_the_label_cap_are_refused() {
        let at_cap = vec!["#"; MAX_PATTERN_LABELS].join(".");
        assert!(ListPattern::new(&at_cap).is_ok());
        let over_cap = vec!["#"; MAX_PATTERN_LABELS + 1].join(".");
        let error = ListPattern::new(&over_cap).unwrap_err();
        assert!(error.to_string().contains("more than 32 labels"), "{error}");
        let four_hundred = vec!["#"; 400].join(".");
        assert!(ListPattern::new(&four_hundred).is_err());
        assert!(ListPattern::new(&"a".repeat(201)).is_err());
    }

    #[test]
    fn matching_a_pattern_at_the_cap_takes_few_steps() {
        // The longest list id (100 one-letter labels) against the patterns
        // a backtracking matcher is slowest on: `#`s with a last label that
        // never matches, and `#`s alternating with `*`.
        let longest = id(&vec!["a"; MAX_LIST_ID_LABELS].join("."));
        assert_eq!(longest.as_str().len(), crate::list::MAX_LIST_ID_LEN - 1);
        let mut hashes = vec!["#"; MAX_PATTERN_LABELS - 1];
        hashes.push("b");
        let alternating: Vec<&str> = (0..MAX_PATTERN_LABELS)
            .map(|i| if i % 2 == 0 { "#" } else { "*" })
            .collect();
        for (pattern, expected) in [(hashes.join("."), false), (alternating.join("."), true)] {
            let pattern = ListPattern::new(&pattern).unwrap();
            let mut steps = 0;
            assert_eq!(pattern.matches_counting(&longest, &mut steps), expected);
            assert!(steps < 1_000_000, "{steps} steps for {pattern}");
            assert!(steps <= MAX_PATTERN_LABELS * (MAX_LIST_ID_LABELS + 1));
        }
    }
}
