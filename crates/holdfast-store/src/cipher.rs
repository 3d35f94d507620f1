//! Encryption at rest for the embedded database: SQLite is built as SQLCipher, and a database
//! opened with a [`DbKey`] is encrypted page by page (AES-256, with a MAC per page). Without a
//! key SQLCipher behaves exactly like SQLite, so plain databases keep working.
//!
//! The key is 32 random bytes given to SQLCipher as a raw key (`x'…'`), so opening a connection
//! costs no key derivation. It lives in a key file readable only by Holdfast's account, or in
//! an environment variable; never on a command line.

use crate::files;
use anyhow::Context as _;
use std::path::Path;

/// The key of an encrypted SQLite database. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DbKey([u8; 32]);

impl std::fmt::Debug for DbKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DbKey({})", self.fingerprint())
    }
}

impl DbKey {
    pub fn generate() -> anyhow::Result<DbKey> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(DbKey(bytes))
    }

    /// Parses the text form: 64 hexadecimal digits (surrounding white space ignored).
    pub fn from_text(text: &str) -> Result<DbKey, String> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "a database key is 64 hexadecimal digits (this is {} characters); `holdfast db encrypt` makes one",
                text.len()
            ));
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(DbKey(bytes))
    }

    pub fn to_text(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Names the key without revealing it (the first 16 hex digits of its SHA-256), so that an
    /// administrator can tell which key a database needs.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("holdfast-db-key:{}", self.to_text()));
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// SQLCipher's raw-key form, for `PRAGMA key` and `ATTACH … KEY`.
    pub(crate) fn sql_literal(&self) -> String {
        format!("\"x'{}'\"", self.to_text())
    }

    /// Reads a key file, refusing one that other accounts could read.
    pub fn read_file(path: &Path) -> anyhow::Result<DbKey> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the database key file {}", path.display()))?;
        anyhow::ensure!(
            files::is_private(path)?,
            "the database key file {} can be read by other accounts on this machine; make it private with `chmod 600 {}`",
            path.display(),
            path.display()
        );
        DbKey::from_text(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Writes the key to a new private file (refusing to replace an existing one).
    pub fn write_new_file(&self, path: &Path) -> anyhow::Result<()> {
        files::write_secret_new(path, format!("{}\n", self.to_text()).as_bytes()).with_context(
            || {
                format!(
                    "cannot write the database key file {} (it must not exist yet)",
                    path.display()
                )
            },
        )
    }
}

/// What the first bytes of an SQLite file say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Missing,
    Empty,
    /// Starts with SQLite's header: not encrypted.
    Plain,
    /// Anything else: encrypted (SQLCipher files begin with random salt) or not a database.
    Opaque,
}

pub fn file_kind(path: &Path) -> FileKind {
    use std::io::Read as _;
    let Ok(mut file) = std::fs::File::open(path) else {
        return FileKind::Missing;
    };
    let mut header = [0u8; 16];
    match file.read(&mut header) {
        Ok(0) => FileKind::Empty,
        Ok(16) if &header == b"SQLite format 3\0" => FileKind::Plain,
        _ => FileKind::Opaque,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_text_and_never_show_in_debug() {
        let key = DbKey::generate().unwrap();
        let text = key.to_text();
        assert_eq!(DbKey::from_text(&format!(" {text}\n")).unwrap(), key);
        assert!(!format!("{key:?}").contains(&text[..16]));
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63)] {
            assert!(DbKey::from_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_files_are_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.key");
        let key = DbKey::generate().unwrap();
        key.write_new_file(&path).unwrap();
        assert_eq!(DbKey::read_file(&path).unwrap(), key);
        assert!(DbKey::generate().unwrap().write_new_file(&path).is_err());
        assert_eq!(DbKey::read_file(&path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let error = DbKey::read_file(&path).unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{error}");
        }
    }
}
