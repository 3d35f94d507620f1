//! The audit key: a secret kept outside the database that seals the audit log.
//!
//! Without it every audit entry's hash is SHA-256 over the previous hash and the entry, which
//! anyone who can write to the database can recompute after rewriting the whole log. From the
//! entry the log was sealed at (`from`) on, each hash is HMAC-SHA-256 under this key instead:
//! a rewrite made without the key no longer verifies. The key's file records `from` too, so
//! marking the log "not sealed" in the database does not help a forger either.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

/// How the key's text form starts: `HOLDFAST-AUDIT-KEY-1 from=<entry> <64 hex digits>`.
const PREFIX: &str = "HOLDFAST-AUDIT-KEY-1";

#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey {
    secret: [u8; 32],
    /// The first audit entry sealed with this key; 0 while it seals nothing yet.
    from: i64,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({}, from {})", self.id(), self.from)
    }
}

impl AuditKey {
    /// A new random key that seals nothing yet.
    pub fn generate() -> anyhow::Result<AuditKey> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(AuditKey { secret, from: 0 })
    }

    /// A short name for the key that reveals nothing of it, as the database records it.
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"holdfast audit key id\n")
            .chain_update(self.secret)
            .finalize();
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("ak-{hex}")
    }

    pub fn from(&self) -> i64 {
        self.from
    }

    /// The same key, sealing from entry `from` on.
    pub fn sealing_from(&self, from: i64) -> AuditKey {
        AuditKey {
            secret: self.secret,
            from,
        }
    }

    /// The text form, one line: what the key file and a backup hold.
    pub fn to_text(&self) -> String {
        let hex: String = self.secret.iter().map(|b| format!("{b:02x}")).collect();
        format!("{PREFIX} from={} {hex}", self.from)
    }

    /// Parses the text form; lines starting with `#` and blank lines are skipped.
    pub fn from_text(text: &str) -> Result<AuditKey, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .ok_or("the audit key file holds no key")?;
        let mut parts = line.split_whitespace();
        let (Some(PREFIX), Some(from), Some(hex), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "an audit key reads `{PREFIX} from=<entry> <64 hexadecimal digits>`"
            ));
        };
        let from = from
            .strip_prefix("from=")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or("the audit key's `from=` is not an entry number")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the audit key's secret is not 64 hexadecimal digits".into());
        }
        let mut secret = [0u8; 32];
        for (i, byte) in secret.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| "the audit key's secret is not hexadecimal")?;
        }
        Ok(AuditKey { secret, from })
    }

    /// HMAC-SHA-256 of `canonical` under the key, hex-encoded.
    pub(crate) fn seal(&self, canonical: &[u8]) -> String {
        // A key shorter than SHA-256's 64-byte block is zero-padded by HMAC itself (RFC 2104),
        // so this is HMAC under the 32-byte secret, without a fallible length check.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.secret);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
        mac.update(canonical);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Which key seals a database's audit log, as its head row records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSeal {
    /// The newest entry.
    pub seq: i64,
    /// The sealing key's id; empty while the log is not sealed.
    pub key_id: String,
    /// The first sealed entry.
    pub keyed_from: i64,
}

impl AuditSeal {
    pub fn sealed(&self) -> bool {
        !self.key_id.is_empty()
    }
}

/// The key for a log sealed with `key_id` among `candidates`: `Ok(None)` for a log not
/// sealed, an error naming the key when none of them is it.
pub(crate) fn resolve<'a>(
    key_id: &str,
    candidates: impl IntoIterator<Item = &'a AuditKey>,
) -> Result<Option<AuditKey>, String> {
    if key_id.is_empty() {
        return Ok(None);
    }
    candidates
        .into_iter()
        .find(|key| key.id() == key_id)
        .cloned()
        .map(Some)
        .ok_or_else(|| missing(key_id))
}

/// Why a sealed log cannot be written to or checked here.
pub fn missing(key_id: &str) -> String {
    format!(
        "this database's audit log is sealed with audit key {key_id}, which this Holdfast was not given: \
         point `[audit] key_file` at that key (every instance sharing the database needs a copy of the same audit.key)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_round_trips_and_names_what_is_wrong() {
        let key = AuditKey::generate().unwrap().sealing_from(42);
        let text = format!("# comment\n\n{}\n", key.to_text());
        assert_eq!(AuditKey::from_text(&text).unwrap(), key);
        assert!(key.id().starts_with("ak-") && key.id().len() == 19);
        assert!(!format!("{key:?}").contains(&key.to_text()[30..]));
        for (bad, says) in [
            ("", "holds no key"),
            ("HOLDFAST-AUDIT-KEY-1 from=x 00", "not an entry number"),
            ("HOLDFAST-AUDIT-KEY-1 from=1 abc", "64 hexadecimal"),
            ("AGE-SECRET-KEY-1XYZ", "reads `HOLDFAST-AUDIT-KEY-1"),
        ] {
            let error = AuditKey::from_text(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn the_seal_is_hmac_sha256() {
        // Computed independently with Python's hmac module:
        // hmac.new(bytes(range(32)), b"holdfast", hashlib.sha256).hexdigest()
        let key = AuditKey {
            secret: std::array::from_fn(|i| i as u8),
            from: 1,
        };
        assert_eq!(
            key.seal(b"holdfast"),
            "4b3b1e7b87be634c1c4efb096ad95f41f66b00c3ff16bb32b76367fd5c5e7aa4"
        );
    }
}
