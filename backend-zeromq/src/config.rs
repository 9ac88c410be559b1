//! How a hub binds and how a client connects, with the defaults an operator
//! would pick.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use archiver_core::journal::SyncPolicy;
use archiver_core::{BackendError, ErrorDetail, Grant, ListPattern, PublisherCapabilities};
use serde::Deserialize;

/// Largest envelope body a hub takes by default: the one default of every
/// backend (32 MiB, the default mail limit).
pub use archiver_core::DEFAULT_MAX_ENVELOPE_BYTES;

/// How often each side says it is alive by default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Silence after which a peer is treated as gone by default: a dead
/// archive server's unsettled deliveries go to the others after this.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest delay a NACK may ask for by default: a longer one is cut to
/// this, so no peer can pin the journal with a delay of centuries.
pub const DEFAULT_MAX_NACK_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a connection may hold a delivery unsettled by default: after
/// this it goes back to the queue, counted as an attempt, even if the
/// connection still pings (a mail that hangs every consumer reaches the
/// dead letters).
pub const DEFAULT_ACK_DEADLINE: Duration = Duration::from_secs(5 * 60);

/// Most envelope bytes a hub has delivered and not yet seen settled on one
/// connection by default, whatever its prefetch: a connection that never
/// reads costs the hub at most this plus one envelope (the bound is
/// checked before each delivery), so a peer with N connections N times
/// that.
pub const DEFAULT_MAX_UNACKED_BYTES: usize = 64 * 1024 * 1024;

/// Most dead-letter bytes in one DEAD-LETTERS reply page by default (a
/// page holds at least one dead letter, whatever its size).
pub const DEFAULT_DEAD_LETTER_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// A user name and password for ZAP PLAIN. PLAIN sends them in clear text,
/// like everything else on these sockets: see the crate docs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password (never logged; `Debug` hides it).
    pub password: String,
}

impl Credentials {
    /// A user and password.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, ****)", self.user)
    }
}

/// Whether this build's libzmq can do CURVE: the bundled libzmq of
/// `zmq-sys` cannot; the system's (linked through the repository's
/// `.cargo/config.toml`) can. See the crate docs ("Which libzmq").
pub fn curve_available() -> bool {
    zmq::has("curve") == Some(true)
}

/// The error for CURVE configured on a libzmq without it.
pub(crate) fn curve_missing(what: &str) -> BackendError {
    BackendError::Auth(format!(
        "{what}: this build's libzmq has no CURVE (zmq::has(\"curve\") is false): link the system's libzmq (libzmq3-dev) with the `[target.<triple>.zmq] rustc-link-lib = [\"zmq\"]` lines of this repository's .cargo/config.toml (see backend-zeromq's crate docs)"
    ).into())
}

/// A CURVE public key: 32 bytes, written as 40 characters of Z85 (ZeroMQ
/// RFC 32). A hub's public key is what its clients check it by; a
/// client's is what the hub's allowlist knows it by. Public, so printing
/// it is safe (the crate still never logs it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurveKey([u8; 32]);

impl CurveKey {
    /// The key of 32 raw bytes (as a ZAP request carries it).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key as 40 characters of Z85.
    pub fn to_z85(&self) -> String {
        zmq::z85_encode(&self.0).expect("32 bytes encode to Z85")
    }

    /// Reads a public key file: the `public-key = "…"` line
    /// [`CurveKeyPair::write_files`] writes, or the 40 Z85 characters
    /// alone on a line (`#` starts a comment).
    pub fn read_file(path: &Path) -> Result<Self, BackendError> {
        let text = read_key_file(path)?;
        let value = key_value(&text, "public-key")
            .or_else(|| {
                text.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
            })
            .ok_or_else(|| key_file_error(path, "no public key in it"))?;
        value
            .parse()
            .map_err(|e: BackendError| key_file_error(path, &e.to_string()))
    }
}

impl std::str::FromStr for CurveKey {
    type Err = BackendError;

    /// 40 characters of Z85; the error never quotes the text.
    fn from_str(text: &str) -> Result<Self, BackendError> {
        decode_key(text).map(Self)
    }
}

impl fmt::Display for CurveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z85())
    }
}

impl fmt::Debug for CurveKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurveKey({})", self.to_z85())
    }
}

impl<'de> Deserialize<'de> for CurveKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// 40 Z85 characters as 32 bytes; the error says what is wrong, never
/// the text (it may be a secret key pasted in the wrong place).
fn decode_key(text: &str) -> Result<[u8; 32], BackendError> {
    let wrong = || {
        BackendError::InvalidConfig(
            format!(
                "a CURVE key is 40 characters of Z85, not this one of {} characters",
                text.len()
            )
            .into(),
        )
    };
    if text.len() != 40 {
        return Err(wrong());
    }
    // `zmq::z85_decode` does not check the alphabet (libzmq's decoder
    // would refuse, the crate's own does not): a text that does not
    // encode back to itself was not Z85.
    zmq::z85_decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .filter(|bytes| zmq::z85_encode(bytes).is_ok_and(|again| again == text))
        .ok_or_else(|| {
            BackendError::InvalidConfig(
                "a CURVE key is 40 characters of Z85, and this one has characters outside Z85's alphabet".into(),
            )
        })
}

/// A CURVE key pair: a hub's (its clients know the public half) or a
/// client's (the hub's allowlist knows the public half). `Debug` shows the
/// public key only, and nothing in this crate logs the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CurveKeyPair {
    /// The public half, safe to hand out.
    pub public: CurveKey,
    secret: [u8; 32],
}

impl fmt::Debug for CurveKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurveKeyPair({}, secret ****)", self.public)
    }
}

impl CurveKeyPair {
    /// A new random key pair, from libzmq (libsodium); `Auth` when this
    /// build's libzmq has no CURVE.
    pub fn generate() -> Result<Self, BackendError> {
        if !curve_available() {
            return Err(curve_missing("generating a CURVE key pair"));
        }
        let pair = zmq::CurveKeyPair::new().map_err(|e| {
            BackendError::Auth(ErrorDetail::caused_by(
                format!("generating a CURVE key pair: {e}"),
                e,
            ))
        })?;
        Ok(Self {
            public: CurveKey(pair.public_key),
            secret: pair.secret_key,
        })
    }

    /// The pair of a public key and its secret key, both Z85; refused
    /// with `Auth` unless the public key is the one of the secret key (a
    /// mismatched pair fails every handshake, far from its cause).
    pub fn from_z85(public: &str, secret: &str) -> Result<Self, BackendError> {
        let pair = Self {
            public: public.parse()?,
            secret: decode_key(secret)?,
        };
        if pair.derived_public()? != pair.public {
            return Err(BackendError::InvalidConfig(
                "the public key is not the one of the secret key (halves of two key pairs?)".into(),
            ));
        }
        Ok(pair)
    }

    /// The public key of the secret half, as libzmq derives it.
    fn derived_public(&self) -> Result<CurveKey, BackendError> {
        if !curve_available() {
            return Err(curve_missing("reading a CURVE key pair"));
        }
        let secret = zmq::z85_encode(&self.secret).expect("32 bytes encode to Z85");
        let secret = std::ffi::CString::new(secret).expect("Z85 has no NUL");
        let mut public = [0 as std::ffi::c_char; 41];
        // SAFETY: libzmq reads 40 characters and a NUL from `secret` and
        // writes 40 and a NUL into `public`.
        let rc = unsafe { zmq_curve_public(public.as_mut_ptr(), secret.as_ptr()) };
        // SAFETY: written NUL-terminated above when rc is 0.
        let text = (rc == 0).then(|| unsafe { std::ffi::CStr::from_ptr(public.as_ptr()) });
        text.and_then(|t| t.to_str().ok())
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                BackendError::Auth("libzmq cannot derive the public key of a secret key".into())
            })
    }

    /// The secret key's 32 bytes, for the socket option only.
    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// Reads a key pair file as [`write_files`](Self::write_files) writes
    /// it (`NAME.key`: `public-key = "…"` and `secret-key = "…"`). An
    /// error names the file, never a key.
    pub fn read_file(path: &Path) -> Result<Self, BackendError> {
        let text = read_key_file(path)?;
        let field = |name: &str| {
            key_value(&text, name).ok_or_else(|| key_file_error(path, &format!("no {name} in it")))
        };
        Self::from_z85(field("public-key")?, field("secret-key")?)
            .map_err(|e| key_file_error(path, &e.to_string()))
    }

    /// Writes `PREFIX.key` (the pair, mode 0600, readable by its owner
    /// only) and `PREFIX.pub` (the public key, to hand to the other side),
    /// refusing to overwrite either: a key pair replaced by mistake locks
    /// out every peer that knew the old one. Returns both paths.
    pub fn write_files(&self, prefix: &Path) -> Result<(PathBuf, PathBuf), BackendError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let with = |ext: &str| {
            let mut name = prefix.as_os_str().to_owned();
            name.push(ext);
            PathBuf::from(name)
        };
        let (secret_path, public_path) = (with(".key"), with(".pub"));
        let create = |path: &Path, mode: u32, text: String| {
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
                .and_then(|mut file| {
                    file.write_all(text.as_bytes())?;
                    file.sync_all()
                });
            written.map_err(|e| key_file_error(path, &e.to_string()))
        };
        if public_path.exists() {
            return Err(key_file_error(&public_path, "exists; not overwritten"));
        }
        let public = format!("public-key = \"{}\"\n", self.public);
        create(
            &secret_path,
            0o600,
            format!(
                "# CURVE key pair of an mq-archiver peer: keep this file secret\n{public}secret-key = \"{}\"\n",
                zmq::z85_encode(&self.secret).expect("32 bytes encode to Z85")
            ),
        )?;
        create(
            &public_path,
            0o644,
            format!("# CURVE public key of an mq-archiver peer\n{public}"),
        )?;
        Ok((secret_path, public_path))
    }
}

// libzmq's (4.2 and later); `zmq-sys` 0.12 binds it without exporting it.
unsafe extern "C" {
    fn zmq_curve_public(
        z85_public_key: *mut std::ffi::c_char,
        z85_secret_key: *const std::ffi::c_char,
    ) -> std::ffi::c_int;
}

fn read_key_file(path: &Path) -> Result<String, BackendError> {
    std::fs::read_to_string(path).map_err(|e| {
        BackendError::InvalidConfig(ErrorDetail::caused_by(
            format!("CURVE key file {}: {e}", path.display()),
            e,
        ))
    })
}

fn key_file_error(path: &Path, why: &str) -> BackendError {
    BackendError::InvalidConfig(format!("CURVE key file {}: {why}", path.display()).into())
}

/// The quoted value of a `name = "value"` line.
fn key_value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == name).then(|| value.trim().trim_matches('"'))
    })
}

/// A grant of everything (every subscriber name and list, private lists,
/// membership events, operator actions): what anonymous peers of a hub on
/// loopback get ([`HubConfig::allow_anonymous`]), and what a hub with one
/// shared user gives it, as before grants existed.
pub fn full_access(principal: impl Into<String>) -> Grant {
    Grant::new(principal)
        .lists(ListPattern::new("#").expect("`#` is a valid pattern"))
        .private_lists(true)
        .membership_events(true)
        .operator(true)
}

/// How a principal of the allowlist proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// ZAP PLAIN: a user name and password, in clear on the wire (tests
    /// and loopback; see the crate docs).
    Plain(Credentials),
    /// CURVE: the client's public key (it proves it holds the secret one
    /// in the handshake, which also encrypts the connection).
    Curve(CurveKey),
}

/// One allowlist entry: how the principal logs in, and its grant (the
/// grant's principal is the ZAP user id the hub checks).
#[derive(Debug, Clone)]
pub struct Allowed {
    /// What the peer presents.
    pub login: Login,
    /// What it may do once logged in.
    pub grant: Grant,
}

/// An allowlist entry as a grants file writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowedText {
    user: Option<String>,
    password: Option<String>,
    curve_public_key: Option<String>,
    grant: Grant,
}

impl Allowed {
    /// Reads a grants file: a JSON list of `{"user", "password", "grant"}`
    /// (PLAIN) or `{"curve_public_key", "grant"}` (CURVE: the client's
    /// public key, Z85), the grant as [`Grant`]'s JSON, so an operator
    /// keeps the allowlist outside the code (and can reload it:
    /// [`ZmqHub::reload_allowlist`](crate::ZmqHub::reload_allowlist)). An
    /// error names the file and where it is wrong, never a value (it may
    /// be a password).
    ///
    /// ```json
    /// [{"curve_public_key": "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
    ///   "grant": {"principal": "web", "subscribers": ["web"], "lists": ["#"]}}]
    /// ```
    pub fn read_file(path: &Path) -> Result<Vec<Self>, BackendError> {
        let refused = |why: String| {
            BackendError::InvalidConfig(format!("grants file {}: {why}", path.display()).into())
        };
        let bytes = std::fs::read(path).map_err(|e| {
            BackendError::InvalidConfig(ErrorDetail::caused_by(
                format!("grants file {}: {e}", path.display()),
                e,
            ))
        })?;
        let entries: Vec<AllowedText> = serde_json::from_slice(&bytes).map_err(|e| {
            let text = e.to_string();
            // A grant's own refusal names the principal and the field;
            // serde's type errors may quote a value, so only where.
            let why = match text.find("grant of ") {
                Some(at) => text[at..].to_owned(),
                None => format!(
                    "not a list of {{user, password, grant}} or {{curve_public_key, grant}} at line {} column {}",
                    e.line(),
                    e.column()
                ),
            };
            refused(why)
        })?;
        entries
            .into_iter()
            .map(|entry| {
                let principal = entry.grant.principal().to_owned();
                let login = match (entry.user, entry.password, entry.curve_public_key) {
                    (Some(user), Some(password), None) => {
                        Login::Plain(Credentials::new(user, password))
                    }
                    (None, None, Some(key)) => Login::Curve(key.parse().map_err(|e| {
                        refused(format!("the curve_public_key of {principal:?}: {e}"))
                    })?),
                    _ => {
                        return Err(refused(format!(
                            "the entry of {principal:?} needs either user and password (PLAIN) or curve_public_key (CURVE)"
                        )));
                    }
                };
                Ok(Self {
                    login,
                    grant: entry.grant,
                })
            })
            .collect()
    }
}

/// The list server's side: where it listens and where it keeps the queues.
///
/// ```
/// use archiver_core::Grant;
/// use backend_zeromq::{CurveKeyPair, HubConfig};
/// # fn demo() -> Result<(), archiver_core::BackendError> {
/// // In production both come from files (CurveKeyPair::read_file,
/// // CurveKey::read_file) written by mq-archiver-admin keygen.
/// let (hub_keys, hyperkitty) = (CurveKeyPair::generate()?, CurveKeyPair::generate()?);
/// let config = HubConfig::new("tcp://0.0.0.0:5555", "/var/lib/mailman/archiver")
///     .tail("tcp://0.0.0.0:5556")
///     .curve(hub_keys)
///     .allow_key(
///         hyperkitty.public,
///         Grant::new("hyperkitty")
///             .subscriber("hyperkitty".parse().unwrap())
///             .lists("#".parse().unwrap()),
///     );
/// # Ok(()) }
/// # demo().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Endpoint archive servers connect to (`tcp://host:port`,
    /// `ipc:///path`); a port of `*` picks a free one (see
    /// [`ZmqHub::endpoint`](crate::ZmqHub::endpoint)).
    pub endpoint: String,
    /// Endpoint of the live tail (PUB/SUB); none by default.
    pub tail_endpoint: Option<String>,
    /// Directory of the journal, the subscriber registry and dead letters.
    pub dir: PathBuf,
    /// Accepted logins (credentials or CURVE public keys), each with its
    /// principal's grant.
    pub allowed: Vec<Allowed>,
    /// The hub's CURVE key pair: with it, every connection is encrypted
    /// and the allowlist is of client public keys ([`HubConfig::allow_key`]).
    pub curve: Option<CurveKeyPair>,
    /// No authentication, every peer with [`full_access`]: only with
    /// [`allow_anonymous`](Self::allow_anonymous), only on `ipc://` or
    /// loopback endpoints, and never together with `allowed`.
    pub anonymous: bool,
    /// How often the hub pings each connection.
    pub heartbeat: Duration,
    /// Silence after which a connection is dropped and its deliveries given
    /// to the subscriber's other connections.
    pub timeout: Duration,
    /// Largest envelope body accepted.
    pub max_envelope_bytes: usize,
    /// When a publish is durable (default: synced to disk before `Ok`).
    pub sync: SyncPolicy,
    /// Longest NACK delay honoured ([`DEFAULT_MAX_NACK_DELAY`]).
    pub max_nack_delay: Duration,
    /// How long a delivery may stay unsettled ([`DEFAULT_ACK_DEADLINE`]).
    pub ack_deadline: Duration,
    /// Most unsettled envelope bytes per connection
    /// ([`DEFAULT_MAX_UNACKED_BYTES`]).
    pub max_unacked_bytes: usize,
    /// Most bytes per DEAD-LETTERS reply page
    /// ([`DEFAULT_DEAD_LETTER_PAGE_BYTES`]).
    pub dead_letter_page_bytes: usize,
}

impl HubConfig {
    /// What publishing through a hub of this configuration guarantees:
    /// known before connecting, so a publisher that connects lazily can
    /// report it.
    pub fn publisher_capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities {
            max_envelope_bytes: self.max_envelope_bytes,
            publish_durability: match self.sync {
                SyncPolicy::Always => {
                    "appended to the list server's journal and synced to its disk (fdatasync); delivered to each subscriber from there"
                }
                SyncPolicy::Within(_) => {
                    "appended to the list server's journal, synced to its disk within the configured time (a power loss may lose the last ones); delivered to each subscriber from there"
                }
            },
            // The hub's journal is on the list server's own disk.
            locally_durable: true,
        }
    }

    /// A hub on `endpoint` keeping its state in `dir`.
    pub fn new(endpoint: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tail_endpoint: None,
            dir: dir.into(),
            allowed: Vec::new(),
            curve: None,
            anonymous: false,
            heartbeat: DEFAULT_HEARTBEAT,
            timeout: DEFAULT_TIMEOUT,
            max_envelope_bytes: DEFAULT_MAX_ENVELOPE_BYTES,
            sync: SyncPolicy::Always,
            max_nack_delay: DEFAULT_MAX_NACK_DELAY,
            ack_deadline: DEFAULT_ACK_DEADLINE,
            max_unacked_bytes: DEFAULT_MAX_UNACKED_BYTES,
            dead_letter_page_bytes: DEFAULT_DEAD_LETTER_PAGE_BYTES,
        }
    }

    /// Also serves a live tail on this endpoint.
    pub fn tail(mut self, endpoint: impl Into<String>) -> Self {
        self.tail_endpoint = Some(endpoint.into());
        self
    }

    /// Accepts these credentials, as the principal of `grant` with what it
    /// grants (and, once one is given, refuses peers without valid ones,
    /// replacing anonymous access if it was allowed before).
    pub fn allow(mut self, credentials: Credentials, grant: Grant) -> Self {
        self.allowed.push(Allowed {
            login: Login::Plain(credentials),
            grant,
        });
        self.anonymous = false;
        self
    }

    /// Encrypts and authenticates with CURVE under this key pair (its
    /// clients need the public half, [`ClientConfig::curve`]); the
    /// allowlist is then of client public keys ([`allow_key`](Self::allow_key)),
    /// and PLAIN credentials are refused at bind.
    pub fn curve(mut self, server: CurveKeyPair) -> Self {
        self.curve = Some(server);
        self
    }

    /// Accepts the CURVE client holding the secret half of `public_key`, as
    /// the principal of `grant` (needs [`curve`](Self::curve)); like
    /// [`allow`](Self::allow), it replaces anonymous access.
    pub fn allow_key(mut self, public_key: CurveKey, grant: Grant) -> Self {
        self.allowed.push(Allowed {
            login: Login::Curve(public_key),
            grant,
        });
        self.anonymous = false;
        self
    }

    /// Serves peers without authentication, each with [`full_access`]:
    /// for a hub whose endpoints are `ipc://` or loopback only (anyone on
    /// the machine is trusted); [`ZmqHub::bind`](crate::ZmqHub::bind)
    /// refuses any other endpoint, and warns. After [`allow`](Self::allow)
    /// it is refused at bind (credentials are never dropped silently).
    pub fn allow_anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// Sets the heartbeat interval and the silence after which a peer is gone.
    pub fn heartbeat(mut self, every: Duration, timeout: Duration) -> Self {
        self.heartbeat = every;
        self.timeout = timeout.max(every * 2);
        self
    }

    /// Sets the largest envelope body accepted.
    pub fn max_envelope_bytes(mut self, limit: usize) -> Self {
        self.max_envelope_bytes = limit;
        self
    }

    /// Sets when a publish is durable: [`SyncPolicy::Always`] (the
    /// default) syncs the hub's journal before `Ok`;
    /// [`SyncPolicy::Within`] acknowledges after the write and syncs
    /// within that time (a process crash loses nothing, power loss may
    /// lose the last window), which [`publisher_capabilities`](Self::publisher_capabilities)
    /// reports.
    pub fn sync(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }

    /// Sets the longest NACK delay honoured; longer ones are cut to it.
    pub fn max_nack_delay(mut self, limit: Duration) -> Self {
        self.max_nack_delay = limit;
        self
    }

    /// Sets how long a delivery may stay unsettled before it goes back to
    /// the queue as a failed attempt.
    pub fn ack_deadline(mut self, deadline: Duration) -> Self {
        self.ack_deadline = deadline;
        self
    }

    /// Sets the most unsettled envelope bytes one connection may hold (at
    /// least one delivery is always allowed, whatever its size, and the
    /// last one may go over by up to its own size).
    pub fn max_unacked_bytes(mut self, limit: usize) -> Self {
        self.max_unacked_bytes = limit;
        self
    }

    /// Sets the most bytes per DEAD-LETTERS reply page.
    pub fn dead_letter_page_bytes(mut self, limit: usize) -> Self {
        self.dead_letter_page_bytes = limit;
        self
    }
}

/// The archive server's side: which hubs it connects to.
///
/// ```
/// use backend_zeromq::{ClientConfig, CurveKeyPair};
/// # fn demo() -> Result<(), archiver_core::BackendError> {
/// # let hub_keys = CurveKeyPair::generate()?;
/// // The hub's public key and this archive server's key pair, from files
/// // in production (CurveKey::read_file, CurveKeyPair::read_file).
/// let (hub_public, own) = (hub_keys.public, CurveKeyPair::generate()?);
/// let config = ClientConfig::new("tcp://lists.example.org:5555")
///     .also("tcp://lists2.example.org:5555")
///     .curve(hub_public, own);
/// # Ok(()) }
/// # demo().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Hub endpoints; a subscription consumes from all of them.
    pub endpoints: Vec<String>,
    /// Tail endpoints, one per hub that serves a tail.
    pub tail_endpoints: Vec<String>,
    /// Credentials for hubs that require them.
    pub credentials: Option<Credentials>,
    /// CURVE: the hub's public key and this client's key pair.
    pub curve: Option<ClientCurve>,
    /// How long `subscribe` and requests wait for every hub to answer.
    pub connect_timeout: Duration,
}

/// A CURVE client's keys.
#[derive(Debug, Clone)]
pub struct ClientCurve {
    /// The hub's public key: the client talks only to a hub holding its
    /// secret half.
    pub server: CurveKey,
    /// This client's key pair; the hub's allowlist has its public half.
    pub own: CurveKeyPair,
}

impl ClientConfig {
    /// A client of the hub at `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoints: vec![endpoint.into()],
            tail_endpoints: Vec::new(),
            credentials: None,
            curve: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Also consumes from the hub at `endpoint` (another list server).
    pub fn also(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }

    /// Tails the hub tail at `endpoint` (may be given once per hub).
    pub fn tail(mut self, endpoint: impl Into<String>) -> Self {
        self.tail_endpoints.push(endpoint.into());
        self
    }

    /// Authenticates with these credentials.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Encrypts with CURVE, and authenticates both ways: the hub must hold
    /// the secret half of `server` (else the handshake fails, an `Auth`
    /// error), and it knows this client by `own`'s public key. Not
    /// together with [`credentials`](Self::credentials) (refused at
    /// connect).
    pub fn curve(mut self, server: CurveKey, own: CurveKeyPair) -> Self {
        self.curve = Some(ClientCurve { server, own });
        self
    }

    /// Refuses PLAIN and CURVE together, and CURVE on a libzmq without it,
    /// before any socket is made.
    pub(crate) fn check_security(&self) -> Result<(), BackendError> {
        match (&self.credentials, &self.curve) {
            (Some(_), Some(_)) => Err(BackendError::Auth(
                "a ZeroMQ client takes either PLAIN credentials (ClientConfig::credentials) or CURVE keys (ClientConfig::curve), not both".into(),
            )),
            (None, Some(_)) if !curve_available() => Err(curve_missing("ClientConfig::curve")),
            _ => Ok(()),
        }
    }

    /// Sets how long to wait for the hubs to answer.
    pub fn connect_timeout(mut self, wait: Duration) -> Self {
        self.connect_timeout = wait;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sync` is reported by the capabilities; the default envelope
    /// limit is the core's, as every backend's.
    #[test]
    fn the_sync_setter_shows_in_the_capabilities() {
        let always = HubConfig::new("ipc:///tmp/hub", "/tmp/hub");
        assert_eq!(
            always.max_envelope_bytes,
            archiver_core::DEFAULT_MAX_ENVELOPE_BYTES
        );
        let within = always
            .clone()
            .sync(SyncPolicy::Within(Duration::from_millis(10)));
        assert_eq!(within.sync, SyncPolicy::Within(Duration::from_millis(10)));
        assert!(
            within
                .publisher_capabilities()
                .publish_durability
                .contains("within the configured time")
        );
        assert!(
            always
                .publisher_capabilities()
                .publish_durability
                .contains("fdatasync")
        );
        assert!(
            always.publisher_capabilities().locally_durable
                && within.publisher_capabilities().locally_durable,
            "the journal is on the list server's disk, whatever the sync policy"
        );
    }

    #[test]
    fn grants_files_are_read_and_their_errors_quote_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.json");
        std::fs::write(
            &path,
            r##"[{"user": "web", "password": "hunter2",
                 "grant": {"principal": "web-archive", "subscribers": ["web"], "lists": ["#"]}}]"##,
        )
        .unwrap();
        let allowed = Allowed::read_file(&path).unwrap();
        assert_eq!(
            allowed[0].login,
            Login::Plain(Credentials::new("web", "hunter2"))
        );
        assert_eq!(allowed[0].grant.principal(), "web-archive");

        for (text, says) in [
            (
                r#"[{"user": "web", "password": 271828, "grant": {"principal": "w"}}]"#,
                "line 1",
            ),
            (
                r#"[{"user": "web", "password": "x", "grant": {"principal": "w", "lists": ["a b"]}}]"#,
                "grant of \"w\"",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = Allowed::read_file(&path).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
            assert!(!error.contains("271828"), "{error}");
        }
        assert!(Allowed::read_file(&dir.path().join("none")).is_err());
    }

    #[test]
    fn this_build_links_a_libzmq_with_curve() {
        // The .cargo/config.toml links override: the bundled libzmq says None.
        assert_eq!(zmq::has("curve"), Some(true));
    }

    #[test]
    fn key_files_are_written_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pair = CurveKeyPair::generate().unwrap();
        let prefix = dir.path().join("hub");
        let (secret, public) = pair.write_files(&prefix).unwrap();
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(CurveKeyPair::read_file(&secret).unwrap(), pair);
        assert_eq!(CurveKey::read_file(&public).unwrap(), pair.public);
        let again = CurveKeyPair::generate().unwrap().write_files(&prefix);
        assert!(again.unwrap_err().to_string().contains("exists"));
        assert_eq!(CurveKeyPair::read_file(&secret).unwrap(), pair);
        // A bare Z85 line is a public key file too.
        let bare = dir.path().join("bare.pub");
        std::fs::write(&bare, format!("{}\n", pair.public)).unwrap();
        assert_eq!(CurveKey::read_file(&bare).unwrap(), pair.public);
        let secret_text = zmq::z85_encode(pair.secret_bytes()).unwrap();
        assert!(!format!("{pair:?}").contains(&secret_text));
        let client = ClientConfig::new("tcp://x:1").curve(pair.public, pair.clone());
        assert!(!format!("{client:?}").contains(&secret_text));
        let error = "short".parse::<CurveKey>().unwrap_err().to_string();
        assert!(!error.contains("short"), "{error}");
    }

    #[test]
    fn keys_outside_the_z85_alphabet_are_refused() {
        let good = CurveKeyPair::generate().unwrap().public.to_z85();
        for bad in ['"', '~', ',', ';'] {
            let text: String = std::iter::once(bad).chain(good.chars().skip(1)).collect();
            assert_eq!(text.len(), 40);
            let refused = text.parse::<CurveKey>();
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.to_string().contains("alphabet")),
                "{bad:?}: {refused:?}"
            );
        }
        assert_eq!(good.parse::<CurveKey>().unwrap().to_z85(), good);
    }

    #[test]
    fn a_key_pair_file_with_halves_of_two_pairs_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (
            CurveKeyPair::generate().unwrap(),
            CurveKeyPair::generate().unwrap(),
        );
        let path = dir.path().join("mixed.key");
        std::fs::write(
            &path,
            format!(
                "public-key = \"{}\"\nsecret-key = \"{}\"\n",
                one.public,
                zmq::z85_encode(two.secret_bytes()).unwrap()
            ),
        )
        .unwrap();
        let error = CurveKeyPair::read_file(&path).unwrap_err().to_string();
        assert!(error.contains("mixed.key"), "{error}");
        assert!(error.contains("not the one of the secret key"), "{error}");
        let secret = zmq::z85_encode(two.secret_bytes()).unwrap();
        assert!(!error.contains(&secret) && !error.contains(&one.public.to_z85()));
        assert_eq!(
            CurveKeyPair::from_z85(&two.public.to_z85(), &secret).unwrap(),
            two
        );
    }

    #[test]
    fn grants_files_take_curve_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.json");
        let key = CurveKeyPair::generate().unwrap().public;
        std::fs::write(
            &path,
            format!(r#"[{{"curve_public_key": "{key}", "grant": {{"principal": "web"}}}}]"#),
        )
        .unwrap();
        assert_eq!(
            Allowed::read_file(&path).unwrap()[0].login,
            Login::Curve(key)
        );
        for text in [
            r#"[{"curve_public_key": "not-a-key-hunter2", "grant": {"principal": "w"}}]"#,
            r#"[{"user": "u", "password": "hunter2", "curve_public_key": "x", "grant": {"principal": "w"}}]"#,
            r#"[{"user": "u", "grant": {"principal": "w"}}]"#,
        ] {
            std::fs::write(&path, text).unwrap();
            let error = Allowed::read_file(&path).unwrap_err().to_string();
            assert!(error.contains("\"w\""), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn passwords_are_not_printed() {
        let config = ClientConfig::new("tcp://x:1").credentials(Credentials::new("u", "hunter2"));
        assert!(!format!("{config:?}").contains("hunter2"));
        let hub = HubConfig::new("tcp://*:1", "/tmp/x")
            .allow(Credentials::new("u", "hunter2"), full_access("u"));
        assert!(!format!("{hub:?}").contains("hunter2"));
    }
}
