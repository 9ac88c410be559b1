//! Who may talk to the hub and what each may do: the principals of the
//! allowlist with their grants (looked up per message by its ZAP
//! `User-Id`), or, only where it is safe, anonymous peers; and what the
//! live tail may carry, since it cannot filter per peer.

use std::collections::BTreeMap;

use archiver_core::{BackendError, Grant, ListPattern};

use crate::config::{Allowed, HubConfig, Login, curve_available, curve_missing, full_access};
use crate::zap::Gate;

/// The principal anonymous peers are (a hub without authentication).
pub const ANONYMOUS: &str = "anonymous";

/// How the hub knows who sent a message.
pub enum Access {
    /// No authentication (loopback or `ipc://` only): every peer is
    /// [`ANONYMOUS`] with this grant.
    Anonymous(Grant),
    /// An allowlist (CURVE keys or ZAP PLAIN credentials): by the ZAP user
    /// id of each current login ([`user_id`]), its principal's grant.
    Principals(BTreeMap<String, Grant>),
}

impl Access {
    /// The access a configuration sets, refusing what is unsafe: no
    /// authentication without [`HubConfig::allow_anonymous`], anonymous
    /// access on an endpoint other than `ipc://` or loopback, anonymous and
    /// credentials together, PLAIN credentials and CURVE together (a
    /// socket has one mechanism), CURVE keys without the hub's key pair or
    /// on a libzmq without CURVE, or one principal or key listed twice.
    /// PLAIN is served with a warning that it is not encrypted.
    pub fn of(config: &HubConfig) -> Result<Self, BackendError> {
        let endpoints = std::iter::once(&config.endpoint).chain(config.tail_endpoint.as_ref());
        match (config.anonymous, config.allowed.is_empty()) {
            (true, false) => Err(BackendError::Auth(
                "a hub takes either credentials (HubConfig::allow) or anonymous peers (HubConfig::allow_anonymous), not both".into(),
            )),
            (false, true) => Err(BackendError::Forbidden(format!(
                "a hub without authentication on {}: configure credentials (HubConfig::allow), or allow anonymous peers (HubConfig::allow_anonymous) on ipc:// or loopback endpoints only",
                config.endpoint
            ).into())),
            (true, true) if config.curve.is_some() => Err(BackendError::Auth(
                "a CURVE hub (HubConfig::curve) serves the client keys of its allowlist (HubConfig::allow_key), not anonymous peers".into(),
            )),
            (true, true) => {
                for endpoint in endpoints {
                    if !is_local(endpoint) {
                        return Err(BackendError::Forbidden(format!(
                            "anonymous access on {endpoint}: a hub without authentication binds only ipc:// or loopback (127.0.0.1, [::1], localhost) endpoints; configure credentials (HubConfig::allow) for any other"
                        ).into()));
                    }
                }
                tracing::warn!(endpoint = %config.endpoint, tail = ?config.tail_endpoint, "ZeroMQ hub without authentication: every local peer may read every list, private ones included, and act as operator");
                Ok(Self::Anonymous(full_access(ANONYMOUS)))
            }
            (false, false) => {
                let plain = config
                    .allowed
                    .iter()
                    .any(|a| matches!(a.login, Login::Plain(_)));
                let keys: Vec<_> = config
                    .allowed
                    .iter()
                    .filter_map(|a| match &a.login {
                        Login::Curve(key) => Some(key),
                        Login::Plain(_) => None,
                    })
                    .collect();
                match (&config.curve, plain, keys.is_empty()) {
                    (Some(_), true, _) => {
                        return Err(BackendError::Auth(
                            "a CURVE hub (HubConfig::curve) takes client public keys (HubConfig::allow_key, curve_public_key in a grants file), not PLAIN user names and passwords: a ZeroMQ socket has one mechanism".into(),
                        ));
                    }
                    (None, _, false) => {
                        return Err(BackendError::Auth(
                            "client public keys (HubConfig::allow_key) need the hub's own CURVE key pair (HubConfig::curve)".into(),
                        ));
                    }
                    (Some(_), _, _) if !curve_available() => {
                        return Err(curve_missing("HubConfig::curve"));
                    }
                    (Some(_), _, _) => {}
                    (None, _, true) => {
                        if endpoints.clone().all(|e| is_local(e)) {
                            tracing::warn!(endpoint = %config.endpoint, "ZeroMQ hub with ZAP PLAIN: not encrypted (passwords and mail in clear on loopback); use CURVE (HubConfig::curve) off this machine");
                        } else {
                            tracing::warn!(endpoint = %config.endpoint, tail = ?config.tail_endpoint, "ZeroMQ hub with ZAP PLAIN on a NON-LOOPBACK endpoint: NOT ENCRYPTED, passwords and every mail, private lists included, cross the network in clear and can be read and replayed by anyone on the path; use CURVE (HubConfig::curve)");
                        }
                    }
                }
                if keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k)) {
                    return Err(BackendError::Auth(
                        "the hub's allowlist gives one CURVE key twice".into(),
                    ));
                }
                let mut principals = BTreeMap::new();
                for (i, allowed) in config.allowed.iter().enumerate() {
                    let principal = allowed.grant.principal();
                    if config.allowed[..i]
                        .iter()
                        .any(|a| a.grant.principal() == principal)
                    {
                        return Err(BackendError::Auth(format!(
                            "the hub's allowlist gives principal {principal:?} twice"
                        ).into()));
                    }
                    principals.insert(user_id(allowed), allowed.grant.clone());
                }
                Ok(Self::Principals(principals))
            }
        }
    }

    /// The grant of a message's sender, by the `User-Id` libzmq attached
    /// to it; `None` when the hub does not know it (it never serves such
    /// a message): a revoked principal, or a login no longer current (a
    /// connection made with a key since rotated).
    pub fn grant(&self, user_id: Option<&str>) -> Option<&Grant> {
        match self {
            Self::Anonymous(grant) => Some(grant),
            Self::Principals(principals) => principals.get(user_id?),
        }
    }

    /// What the ZAP handler admits; `None` without authentication.
    pub fn gate(&self, config: &HubConfig) -> Option<Gate> {
        let Self::Principals(principals) = self else {
            return None;
        };
        Some(Gate {
            logins: config
                .allowed
                .iter()
                .filter_map(|a| match &a.login {
                    Login::Plain(credentials) => Some((credentials.clone(), user_id(a))),
                    Login::Curve(_) => None,
                })
                .collect(),
            keys: config
                .allowed
                .iter()
                .filter_map(|a| match &a.login {
                    Login::Curve(key) => Some((*key, user_id(a))),
                    Login::Plain(_) => None,
                })
                .collect(),
            tail: principals
                .iter()
                .filter(|(_, grant)| grant.check_tail(&archiver_core::Selection::all()).is_ok())
                .map(|(user_id, _)| user_id.clone())
                .collect(),
        })
    }

    /// What the live tail carries. With authentication: mail and events of
    /// public lists only, never membership events (a tail cannot filter
    /// per peer, so it carries what every principal admitted to it may
    /// see); without, everything.
    pub fn tail_grant(&self) -> Grant {
        match self {
            Self::Anonymous(grant) => grant.clone(),
            Self::Principals(_) => Grant::new("live tail")
                .lists(ListPattern::new("#").expect("`#` is a valid pattern")),
        }
    }
}

/// The ZAP user id of a login: its principal, `#`, and a fingerprint of
/// the login (a hash of the CURVE public key, or of the PLAIN user and
/// password), so that a rotated key or password gives a new user id and
/// the connections made with the old one name no current login (libzmq
/// keeps a connection's user id for its life). Only the principal part
/// is ever logged ([`crate::zap::principal_of`]).
pub fn user_id(allowed: &Allowed) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    match &allowed.login {
        Login::Plain(credentials) => {
            ("plain", &credentials.user, &credentials.password).hash(&mut hasher)
        }
        Login::Curve(key) => ("curve", key).hash(&mut hasher),
    }
    format!("{}#{:016x}", allowed.grant.principal(), hasher.finish())
}

/// Whether an endpoint is reachable from this machine only: `ipc://`,
/// `inproc://`, or TCP on a loopback address or `localhost`.
fn is_local(endpoint: &str) -> bool {
    if endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://") {
        return true;
    }
    let Some(address) = endpoint.strip_prefix("tcp://") else {
        return false;
    };
    let host = match address.rsplit_once(':') {
        Some((host, _port)) => host,
        None => address,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Credentials;

    #[test]
    fn only_loopback_and_ipc_are_local() {
        for local in [
            "ipc:///run/hub.sock",
            "inproc://x",
            "tcp://127.0.0.1:5555",
            "tcp://127.0.0.1:*",
            "tcp://127.8.9.1:1",
            "tcp://[::1]:5555",
            "tcp://localhost:5555",
        ] {
            assert!(is_local(local), "{local}");
        }
        for exposed in [
            "tcp://0.0.0.0:5555",
            "tcp://*:5555",
            "tcp://192.168.1.2:5555",
            "tcp://[::]:5555",
            "tcp://eth0:5555",
            "tcp://lists.example.org:5555",
            "tcp://127.0.0.1;192.168.1.2:5555",
            "pgm://x",
        ] {
            assert!(!is_local(exposed), "{exposed}");
        }
    }

    #[test]
    fn unsafe_configurations_are_refused() {
        let dir = "/nonexistent";
        let refused = |config: HubConfig| match Access::of(&config) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {config:?}"),
        };
        assert!(
            refused(HubConfig::new("tcp://127.0.0.1:1", dir)).contains("without authentication")
        );
        assert!(
            refused(HubConfig::new("tcp://0.0.0.0:1", dir).allow_anonymous())
                .contains("tcp://0.0.0.0:1")
        );
        assert!(
            refused(
                HubConfig::new("tcp://127.0.0.1:1", dir)
                    .tail("tcp://*:2")
                    .allow_anonymous()
            )
            .contains("tcp://*:2")
        );
        let web = || (Credentials::new("web", "pw"), Grant::new("web"));
        let (c, g) = web();
        assert!(
            refused(
                HubConfig::new("ipc:///x", dir)
                    .allow(c, g)
                    .allow_anonymous()
            )
            .contains("not both")
        );
        let (c, g) = web();
        let replaced = HubConfig::new("tcp://*:1", dir)
            .allow_anonymous()
            .allow(c, g);
        assert!(matches!(Access::of(&replaced), Ok(Access::Principals(_))));
        let (c, g) = web();
        let (c2, g2) = web();
        assert!(
            refused(HubConfig::new("tcp://*:1", dir).allow(c, g).allow(c2, g2)).contains("twice")
        );
        assert!(Access::of(&HubConfig::new("ipc:///x", dir).allow_anonymous()).is_ok());
    }
}
