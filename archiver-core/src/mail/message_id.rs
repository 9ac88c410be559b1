//! Message-ID-Hash exactly as Mailman and HyperKitty compute it, and the
//! stable id given to a mail that arrives without a Message-ID.

use data_encoding::BASE32_NOPAD;
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// Domain of generated Message-IDs: `.invalid` (RFC 2606) can never collide
/// with a real sender's id.
pub const GENERATED_ID_DOMAIN: &str = "archiver.invalid";

/// Strips one pair of surrounding angle brackets, else surrounding
/// whitespace, as Mailman's `add_message_hash` does before hashing.
pub fn bare_message_id(header_value: &str) -> &str {
    let trimmed = header_value.trim();
    trimmed
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(trimmed)
}

/// Mailman's Message-ID-Hash: `base32(sha1(utf8(bare id)))`, 32 characters,
/// no padding. This is the key of permalinks and of archive de-duplication.
///
/// ```
/// use archiver_core::message_id_hash;
/// assert_eq!(message_id_hash("<12345>"), "RSZCG7IGPHFIRW3EMTVMMDNJMNCVCOLE");
/// ```
pub fn message_id_hash(message_id: &str) -> String {
    BASE32_NOPAD.encode(&Sha1::digest(bare_message_id(message_id).as_bytes()))
}

/// A Message-ID derived from the mail's bytes, for mails that have none:
/// the same bytes always give the same id, so a re-published mail still
/// de-duplicates in the archive.
pub fn generated_message_id(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let label = BASE32_NOPAD.encode(&digest[..20]).to_ascii_lowercase();
    format!("{label}@{GENERATED_ID_DOMAIN}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailman_test_vectors() {
        assert_eq!(
            message_id_hash("<12345>"),
            "RSZCG7IGPHFIRW3EMTVMMDNJMNCVCOLE"
        );
        assert_eq!(
            message_id_hash("87myycy5eh.fsf@uwakimon.sk.tsukuba.ac.jp"),
            "JJIGKPKB6CVDX6B2CUG4IHAJRIQIOUTP"
        );
        assert_eq!(
            message_id_hash(" <87myycy5eh.fsf@uwakimon.sk.tsukuba.ac.jp>\r\n"),
            "JJIGKPKB6CVDX6B2CUG4IHAJRIQIOUTP"
        );
    }

    #[test]
    fn generated_ids_are_stable_and_distinct() {
        let a = generated_message_id(b"Subject: a\n\nbody\n");
        assert_eq!(a, generated_message_id(b"Subject: a\n\nbody\n"));
        assert_ne!(a, generated_message_id(b"Subject: b\n\nbody\n"));
        assert!(a.ends_with("@archiver.invalid"));
        assert_eq!(message_id_hash(&a).len(), 32);
    }
}
