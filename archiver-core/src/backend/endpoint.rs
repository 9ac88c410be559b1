//! A broker's address and the CA it is trusted by, checked the same way for
//! every backend before any connection is made: a wrong scheme, a URL that
//! does not parse or a CA file that is missing or not PEM is an
//! [`BackendError::InvalidUrl`] at once, never a connection error later,
//! and the message shows the URL redacted ([`redact_url`]).

use std::path::Path;

use super::{BackendError, ErrorDetail, redact_url};

/// Parses `raw` and checks that its scheme is one of `schemes`; the error
/// names the redacted URL and the schemes this backend takes.
///
/// ```
/// use archiver_core::backend::check_url;
/// assert!(check_url("amqp://u:p@rabbit/lists", &["amqp", "amqps"]).is_ok());
/// let wrong = check_url("redis://u:s3cret@host/", &["amqp", "amqps"]).unwrap_err();
/// assert_eq!(
///     wrong.to_string(),
///     "invalid backend URL: redis://u:***@host/: scheme \"redis\" is not amqp or amqps"
/// );
/// ```
pub fn check_url(raw: &str, schemes: &[&str]) -> Result<url::Url, BackendError> {
    let url = url::Url::parse(raw).map_err(|e| {
        BackendError::InvalidUrl(ErrorDetail::caused_by(
            format!("{}: {e}", redact_url(raw)),
            e,
        ))
    })?;
    if !schemes.contains(&url.scheme()) {
        let accepted = match schemes {
            [] => String::new(),
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        };
        return Err(BackendError::InvalidUrl(
            format!(
                "{}: scheme {:?} is not {accepted}",
                redact_url(raw),
                url.scheme()
            )
            .into(),
        ));
    }
    if url.cannot_be_a_base() {
        // `amqp:user:secret@host` (the `//` forgotten) parses as a scheme
        // and an opaque path: no client reads it as meant, and the error a
        // client gives would quote it, secret included.
        return Err(BackendError::InvalidUrl(
            format!(
                "{}: no `//` after `{}:` (write {}://host)",
                redact_url(raw),
                url.scheme(),
                url.scheme()
            )
            .into(),
        ));
    }
    Ok(url)
}

/// The PEM text of a TLS CA file, checked to hold a certificate: a key, a
/// DER file or a typo in the path is named here rather than surfacing as a
/// handshake failure that looks like a broker fault.
pub fn read_ca_file(path: &Path) -> Result<String, BackendError> {
    let unusable = |why: String| {
        BackendError::InvalidConfig(format!("TLS CA file {}: {why}", path.display()).into())
    };
    let bytes = std::fs::read(path).map_err(|e| {
        BackendError::InvalidConfig(ErrorDetail::caused_by(
            format!("TLS CA file {}: cannot be read: {e}", path.display()),
            e,
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        unusable("is not PEM text (a DER file? convert it with openssl x509)".into())
    })?;
    if !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(unusable("holds no PEM certificate".into()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheme_outside_the_list_is_refused_without_the_password() {
        let schemes = ["redis", "rediss", "redis+unix"];
        assert!(check_url("rediss://u:p@host:6380/2", &schemes).is_ok());
        let wrong = check_url("amqp://u:hunter2@host/", &schemes)
            .unwrap_err()
            .to_string();
        assert!(
            wrong.ends_with("scheme \"amqp\" is not redis, rediss or redis+unix"),
            "{wrong}"
        );
        assert!(!wrong.contains("hunter2"), "{wrong}");
        let unparsed = check_url("hunter2", &schemes).unwrap_err().to_string();
        assert!(!unparsed.contains("hunter2"), "{unparsed}");
        let opaque = check_url("redis:u:hunter2@host/", &schemes).unwrap_err();
        let shown = format!("{opaque} {opaque:?}");
        assert!(matches!(opaque, BackendError::InvalidUrl(_)), "{shown}");
        assert!(
            !shown.contains("hunter2") && shown.contains("no `//`"),
            "{shown}"
        );
    }

    #[test]
    fn a_ca_file_must_exist_and_hold_a_pem_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_ca_file(&dir.path().join("ca.pem")).unwrap_err();
        assert!(
            matches!(&missing, BackendError::InvalidConfig(m) if m.contains("ca.pem") && m.contains("cannot be read")),
            "{missing}"
        );
        let key = dir.path().join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nMC4=\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let not_a_certificate = read_ca_file(&key).unwrap_err().to_string();
        assert!(
            not_a_certificate.ends_with("holds no PEM certificate"),
            "{not_a_certificate}"
        );
        let der = dir.path().join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0xff, 0xfe]).unwrap();
        assert!(
            read_ca_file(&der)
                .unwrap_err()
                .to_string()
                .contains("not PEM text")
        );
        let pem = dir.path().join("ok.pem");
        let certificate = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
        std::fs::write(&pem, certificate).unwrap();
        assert_eq!(read_ca_file(&pem).unwrap(), certificate);
    }
}
