//! The backup archive: one file, every byte of it covered by a checksum.
//!
//! ```text
//! [age encryption, when a key or passphrase is configured — it authenticates every 64 KiB]
//!   "HOLDFAST-BACKUP\n"  format version (u32 LE)
//!   frame  HEAD  header.json        what the archive holds: id, versions, table layouts
//!   frame  PART  0001-users         zstd-compressed JSON lines, one row per line
//!   …
//!   frame  MANI  manifest.json      row counts, a SHA-256 per part and per table's content
//!   "SEAL"  bytes before the seal (u64 LE)  SHA-256 of those bytes  "\nHOLDFAST-END\n"
//! frame = tag (4 bytes) · name length (u16 LE) · name · data length (u64 LE) · data · SHA-256(data)
//! ```
//!
//! A frame's own checksum catches a damaged part; the manifest, written last, catches parts
//! that are missing, added, moved or from another backup; the seal catches a change anywhere
//! else (tags, lengths, padding, a re-checksummed manifest). A tar file was the alternative:
//! its headers and padding are covered by no checksum, so a flipped bit there could go unseen.
//!
//! Reading checks as it goes and reports the first problem as an [`ArchiveError`] whose
//! [`code`](ArchiveError::code) says what is wrong and whose message names the part.

use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};
use std::str::FromStr as _;

pub const MAGIC: &[u8; 16] = b"HOLDFAST-BACKUP\n";
pub const FORMAT_VERSION: u32 = 1;
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
const SEAL_TAG: &[u8; 4] = b"SEAL";
const END_MARKER: &[u8; 14] = b"\nHOLDFAST-END\n";
/// No part is this large (parts are cut at 8 MiB of rows before compression); a larger length
/// is damage, refused before allocating for it.
const MAX_FRAME: u64 = 1 << 30;

/// What the first frame says: enough to restore the parts as they stream past.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: u32,
    pub backup_id: String,
    /// Microseconds since 1970 (UTC).
    pub created_at: i64,
    pub holdfast_version: String,
    pub schema_version: i64,
    pub source_backend: String,
    pub tables: Vec<holdfast_store::TableSpec>,
    /// The audit key that seals the backed-up audit log (its text form), so the log verifies
    /// and goes on sealed wherever the backup is restored. Absent for a log not sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_key: Option<String>,
}

impl Header {
    /// The audit key the archive carries.
    pub fn audit_key(&self) -> anyhow::Result<Option<holdfast_store::AuditKey>> {
        self.audit_key
            .as_deref()
            .map(holdfast_store::AuditKey::from_text)
            .transpose()
            .map_err(|why| anyhow::anyhow!("the backup's audit key: {why}"))
    }
}

/// The last frame: what a complete archive holds, to compare everything else with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: String,
    pub created_at: i64,
    pub holdfast_version: String,
    pub schema_version: i64,
    pub source_backend: String,
    /// SHA-256 of the header frame's data.
    pub header_sha256: String,
    /// The audit log's newest entry when the backup was taken.
    pub audit_seq: i64,
    pub audit_hash: String,
    pub tables: Vec<TableSummary>,
    pub parts: Vec<PartSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableSummary {
    pub name: String,
    pub rows: i64,
    /// SHA-256 over the table's rows as JSON lines in key order, before compression: equal
    /// for the same content on either backend.
    pub content_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartSummary {
    pub name: String,
    pub table: String,
    pub rows: i64,
    /// Compressed size in bytes.
    pub bytes: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn rows_total(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// The key an archive is encrypted with.
#[derive(Clone)]
pub enum Key {
    /// An age X25519 identity (`AGE-SECRET-KEY-1…`), as `holdfast backup keygen` writes it.
    Identity(Box<age::x25519::Identity>),
    /// A passphrase (scrypt); slower to open by design.
    Passphrase(SecretString),
}

impl Key {
    /// Reads an identity file: comment lines (`#`) and the `AGE-SECRET-KEY-1…` line.
    pub fn identity_from_text(text: &str) -> Result<Key, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .ok_or("the key file holds no key")?;
        age::x25519::Identity::from_str(line)
            .map(|identity| Key::Identity(Box::new(identity)))
            .map_err(|_| "the key file does not hold an age secret key (AGE-SECRET-KEY-1…)".into())
    }

    pub fn passphrase(text: &str) -> Result<Key, String> {
        let text = text.trim_end_matches(['\r', '\n']);
        if text.chars().count() < 12 {
            return Err("a backup passphrase needs at least 12 characters".into());
        }
        Ok(Key::Passphrase(SecretString::from(text.to_owned())))
    }

    /// The key as its owner writes it down: the `AGE-SECRET-KEY-1…` line, or the passphrase.
    pub fn secret_text(&self) -> String {
        use age::secrecy::ExposeSecret as _;
        match self {
            Key::Identity(identity) => identity.to_string().expose_secret().to_owned(),
            Key::Passphrase(text) => text.expose_secret().to_owned(),
        }
    }

    /// `key` (an age identity) or `passphrase`.
    pub fn kind(&self) -> &'static str {
        match self {
            Key::Identity(_) => "key",
            Key::Passphrase(_) => "passphrase",
        }
    }

    /// Names the key without revealing it: 16 hex digits of the SHA-256 of its public key (of
    /// the passphrase, salted, for a passphrase), in groups of four for reading aloud.
    pub fn fingerprint(&self) -> String {
        let source = match self {
            Key::Identity(identity) => format!("age:{}", identity.to_public()),
            Key::Passphrase(_) => format!("holdfast-passphrase:{}", self.secret_text()),
        };
        let hex = sha256_hex(source.as_bytes());
        [&hex[0..4], &hex[4..8], &hex[8..12], &hex[12..16]].join("-")
    }

    /// An age encryptor to this key (its public key, or the passphrase).
    pub(crate) fn encryptor(&self) -> io::Result<age::Encryptor> {
        match self {
            Key::Identity(identity) => {
                let recipient = identity.to_public();
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                    .map_err(|e| io::Error::other(e.to_string()))
            }
            Key::Passphrase(passphrase) => {
                Ok(age::Encryptor::with_user_passphrase(passphrase.clone()))
            }
        }
    }

    /// Decrypts an age stream made for this key.
    pub(crate) fn decrypt<R: Read + Send + 'static>(
        &self,
        input: R,
    ) -> Result<Box<dyn Read + Send>, ArchiveError> {
        let decryptor = age::Decryptor::new(input).map_err(decrypt_error)?;
        let reader = match self {
            Key::Identity(identity) => {
                decryptor.decrypt(std::iter::once(identity.as_ref() as &dyn age::Identity))
            }
            Key::Passphrase(passphrase) => {
                let identity = age::scrypt::Identity::new(passphrase.clone());
                decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
            }
        }
        .map_err(decrypt_error)?;
        Ok(Box::new(reader))
    }

    /// A new identity file's text and the public key it encrypts to.
    pub fn generate() -> (String, String) {
        use age::secrecy::ExposeSecret as _;
        let identity = age::x25519::Identity::generate();
        let public = identity.to_public().to_string();
        let text = format!(
            "# Holdfast backup key. Keep a copy somewhere other than this machine:\n# without it, encrypted backups cannot be restored.\n# public key: {public}\n{}\n",
            identity.to_string().expose_secret()
        );
        (text, public)
    }
}

/// Everything that can be wrong with an archive. Each variant has its own [`code`](Self::code).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read the archive: {0}")]
    Io(io::Error),
    #[error("this is not a Holdfast backup (it does not start with the backup or age signature)")]
    NotABackup,
    #[error(
        "this backup uses archive format {found}; this Holdfast reads format {FORMAT_VERSION}: use a newer Holdfast"
    )]
    UnsupportedFormat { found: u32 },
    #[error(
        "this backup is encrypted: give the key file (--key-file) or passphrase file (--passphrase-file) it was made with"
    )]
    NeedsKey,
    #[error("wrong key or passphrase: this backup was encrypted with a different one")]
    WrongKey,
    #[error(
        "the encrypted archive is damaged near byte {offset} of its contents: decryption failed its authentication check ({detail})"
    )]
    EncryptedDamaged { offset: u64, detail: String },
    #[error("the archive is truncated: it ends at byte {offset}, inside {reading}")]
    Truncated { offset: u64, reading: String },
    #[error("the archive's structure is damaged at byte {offset}: {detail}")]
    BadStructure { offset: u64, detail: String },
    #[error("the archive header is damaged: {0}")]
    HeaderDamaged(String),
    #[error("part {name} is damaged: its SHA-256 does not match the checksum stored with it")]
    PartDamaged { name: String },
    #[error("the manifest is damaged or was edited: {0}")]
    ManifestDamaged(String),
    #[error(
        "the manifest belongs to another backup ({manifest_id}, taken {manifest_created}) than the data ({backup_id}): it was replaced, for example by an older one"
    )]
    ManifestFromOtherBackup {
        manifest_id: String,
        manifest_created: String,
        backup_id: String,
    },
    #[error("part {name} is listed in the manifest but missing from the archive")]
    PartMissing { name: String },
    #[error("part {name} is in the archive but not in the manifest: it was added afterwards")]
    UnexpectedPart { name: String },
    #[error("part {name} is out of place: position {position} should hold {expected}")]
    PartOutOfPlace {
        name: String,
        position: usize,
        expected: String,
    },
    #[error(
        "part {name} is not the part this backup wrote: its checksum differs from the manifest's (it was swapped or replaced)"
    )]
    PartForeign { name: String },
    #[error(
        "the archive was modified after it was sealed: its overall SHA-256 does not match the seal"
    )]
    SealMismatch,
    #[error("the archive has {extra} unexpected bytes after its end (at byte {offset})")]
    TrailingData { offset: u64, extra: u64 },
    #[error("part {name} cannot be decoded: {detail}")]
    PartUndecodable { name: String, detail: String },
    #[error("restored content differs from the manifest in table {table}: {detail}")]
    ContentMismatch { table: String, detail: String },
}

impl ArchiveError {
    /// A stable code per kind of problem, for tests, logs and the admin page.
    pub fn code(&self) -> &'static str {
        match self {
            ArchiveError::Io(_) => "unreadable",
            ArchiveError::NotABackup => "not_a_backup",
            ArchiveError::UnsupportedFormat { .. } => "unsupported_format",
            ArchiveError::NeedsKey => "needs_key",
            ArchiveError::WrongKey => "wrong_key",
            ArchiveError::EncryptedDamaged { .. } => "encrypted_damaged",
            ArchiveError::Truncated { .. } => "truncated",
            ArchiveError::BadStructure { .. } => "bad_structure",
            ArchiveError::HeaderDamaged(_) => "header_damaged",
            ArchiveError::PartDamaged { .. } => "part_damaged",
            ArchiveError::ManifestDamaged(_) => "manifest_damaged",
            ArchiveError::ManifestFromOtherBackup { .. } => "manifest_replaced",
            ArchiveError::PartMissing { .. } => "part_missing",
            ArchiveError::UnexpectedPart { .. } => "unexpected_part",
            ArchiveError::PartOutOfPlace { .. } => "part_out_of_place",
            ArchiveError::PartForeign { .. } => "part_foreign",
            ArchiveError::SealMismatch => "seal_mismatch",
            ArchiveError::TrailingData { .. } => "trailing_data",
            ArchiveError::PartUndecodable { .. } => "part_undecodable",
            ArchiveError::ContentMismatch { .. } => "content_mismatch",
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Counts and hashes what passes through to `inner`.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner writer, the SHA-256 of everything written, and how many bytes that was.
    pub fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Sink<W: Write> {
    Plain(W),
    Age(age::stream::StreamWriter<W>),
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

/// Writes an archive frame by frame; [`ArchiveWriter::finish`] seals it.
pub struct ArchiveWriter<W: Write> {
    out: HashingWriter<Sink<W>>,
}

impl<W: Write> ArchiveWriter<W> {
    pub fn new(output: W, key: Option<&Key>) -> io::Result<Self> {
        let sink = match key {
            None => Sink::Plain(output),
            Some(key) => Sink::Age(key.encryptor()?.wrap_output(output)?),
        };
        let mut out = HashingWriter::new(sink);
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        Ok(ArchiveWriter { out })
    }

    /// Writes one frame; returns the SHA-256 of its data.
    pub fn frame(&mut self, tag: &[u8; 4], name: &str, data: &[u8]) -> io::Result<String> {
        let name_len = u16::try_from(name.len()).map_err(|_| io::Error::other("name too long"))?;
        let digest = Sha256::digest(data);
        self.out.write_all(tag)?;
        self.out.write_all(&name_len.to_le_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&(data.len() as u64).to_le_bytes())?;
        self.out.write_all(data)?;
        self.out.write_all(&digest)?;
        Ok(hex(&digest))
    }

    pub fn bytes_written(&self) -> u64 {
        self.out.bytes()
    }

    /// Writes the seal and the end marker, finishes encryption and hands back the output.
    pub fn finish(self) -> io::Result<W> {
        let (mut sink, whole, before) = self.out.finish();
        sink.write_all(SEAL_TAG)?;
        sink.write_all(&before.to_le_bytes())?;
        sink.write_all(&whole)?;
        sink.write_all(END_MARKER)?;
        match sink {
            Sink::Plain(w) => Ok(w),
            Sink::Age(w) => w.finish(),
        }
    }
}

/// One frame as read; `ok` says whether its data matched the checksum stored with it.
struct ReadFrame {
    tag: Vec<u8>,
    name: String,
    data: Vec<u8>,
    ok: bool,
}

/// A part as read from an archive, checked against its own checksum.
pub struct RawPart {
    pub name: String,
    pub table: String,
    pub data: Vec<u8>,
    pub sha256: String,
}

/// Reads and checks an archive front to back: [`open`](Self::open), [`header`](Self::header),
/// [`next_part`](Self::next_part) until `None`, then [`finish`](Self::finish), which checks
/// the manifest against everything read and returns it.
pub struct ArchiveReader {
    source: Box<dyn Read + Send>,
    encrypted: bool,
    /// Bytes of the (decrypted) archive read so far, and their SHA-256.
    offset: u64,
    hasher: Sha256,
    header: Option<(Header, String)>,
    parts: Vec<(String, String)>,
    manifest: Option<Manifest>,
}

impl ArchiveReader {
    /// Recognises the archive, decrypts it with `key` when it is encrypted, and checks the
    /// signature and format version.
    pub fn open<R: Read + Send + 'static>(
        mut input: R,
        key: Option<&Key>,
    ) -> Result<Self, ArchiveError> {
        let mut start = [0u8; 16];
        let got = read_full(&mut input, &mut start).map_err(ArchiveError::Io)?;
        let start = &start[..got];
        if start == MAGIC {
            let mut reader = ArchiveReader {
                source: Box::new(input),
                encrypted: false,
                offset: MAGIC.len() as u64,
                hasher: Sha256::new(),
                header: None,
                parts: Vec::new(),
                manifest: None,
            };
            reader.hasher.update(MAGIC);
            reader.read_version()?;
            return Ok(reader);
        }
        if start == &AGE_MAGIC[..16] {
            let key = key.ok_or(ArchiveError::NeedsKey)?;
            // The peeked bytes go back in front: the decryptor reads the header from the start.
            let chained = io::Cursor::new(start.to_vec()).chain(input);
            return Self::decrypted(key.decrypt(chained)?);
        }
        if MAGIC.starts_with(start) || AGE_MAGIC.starts_with(start) {
            return Err(ArchiveError::Truncated {
                offset: got as u64,
                reading: "the archive signature".into(),
            });
        }
        Err(ArchiveError::NotABackup)
    }

    fn decrypted(source: Box<dyn Read + Send>) -> Result<Self, ArchiveError> {
        let mut reader = ArchiveReader {
            source,
            encrypted: true,
            offset: 0,
            hasher: Sha256::new(),
            header: None,
            parts: Vec::new(),
            manifest: None,
        };
        let magic = reader.take(MAGIC.len() as u64, "the archive signature")?;
        if magic != MAGIC {
            return Err(ArchiveError::NotABackup);
        }
        reader.read_version()?;
        Ok(reader)
    }

    fn read_version(&mut self) -> Result<(), ArchiveError> {
        let version = self.take(4, "the format version")?;
        let found = u32::from_le_bytes(version.try_into().unwrap_or([0; 4]));
        if found != FORMAT_VERSION {
            return Err(ArchiveError::UnsupportedFormat { found });
        }
        Ok(())
    }

    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// Bytes of the archive's (decrypted) contents read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads exactly `len` bytes and adds them to the running hash.
    fn take(&mut self, len: u64, reading: &str) -> Result<Vec<u8>, ArchiveError> {
        let mut buf = Vec::new();
        let got = (&mut self.source)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|e| self.read_error(e))?;
        self.hasher.update(&buf);
        self.offset += got as u64;
        if (got as u64) < len {
            return Err(ArchiveError::Truncated {
                offset: self.offset,
                reading: reading.to_owned(),
            });
        }
        Ok(buf)
    }

    fn read_error(&self, error: io::Error) -> ArchiveError {
        if self.encrypted && error.kind() != io::ErrorKind::UnexpectedEof {
            ArchiveError::EncryptedDamaged {
                offset: self.offset,
                detail: error.to_string(),
            }
        } else if error.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveError::Truncated {
                offset: self.offset,
                reading: "the encrypted stream".into(),
            }
        } else {
            ArchiveError::Io(error)
        }
    }

    /// Reads one frame: its tag, name and data, checked against the frame's own checksum.
    /// Returns `None` at the seal.
    fn frame(&mut self) -> Result<Option<ReadFrame>, ArchiveError> {
        let before_tag = self.hasher.clone();
        let before_offset = self.offset;
        let tag = self.take(4, "a frame tag")?;
        if tag == SEAL_TAG {
            self.seal(before_tag, before_offset)?;
            return Ok(None);
        }
        if !matches!(tag.as_slice(), b"HEAD" | b"PART" | b"MANI") {
            return Err(ArchiveError::BadStructure {
                offset: before_offset,
                detail: format!("unknown frame tag {:?}", String::from_utf8_lossy(&tag)),
            });
        }
        let what = String::from_utf8_lossy(&tag).into_owned();
        let name_len = self.take(2, &format!("a {what} frame"))?;
        let name_len = u16::from_le_bytes([name_len[0], name_len[1]]);
        let name = self.take(u64::from(name_len), &format!("a {what} frame's name"))?;
        let name = String::from_utf8(name).map_err(|_| ArchiveError::BadStructure {
            offset: before_offset,
            detail: "a frame name is not UTF-8".into(),
        })?;
        let len = self.take(8, &format!("the length of {name}"))?;
        let len = u64::from_le_bytes(len.try_into().unwrap_or([0; 8]));
        if len > MAX_FRAME {
            return Err(ArchiveError::BadStructure {
                offset: before_offset,
                detail: format!("{name} claims {len} bytes, more than any part holds"),
            });
        }
        let data = self.take(len, &name)?;
        let stored = self.take(32, &format!("the checksum of {name}"))?;
        let ok = Sha256::digest(&data).as_slice() == stored.as_slice();
        Ok(Some(ReadFrame {
            tag,
            name,
            data,
            ok,
        }))
    }

    fn seal(&mut self, before_tag: Sha256, before_offset: u64) -> Result<(), ArchiveError> {
        let counted = self.take(8, "the seal")?;
        let counted = u64::from_le_bytes(counted.try_into().unwrap_or([0; 8]));
        let whole = self.take(32, "the seal")?;
        let end = self.take(END_MARKER.len() as u64, "the end marker")?;
        if self.manifest.is_none() {
            return Err(ArchiveError::BadStructure {
                offset: before_offset,
                detail: "the seal comes before the manifest".into(),
            });
        }
        if counted != before_offset || before_tag.finalize().as_slice() != whole.as_slice() {
            return Err(ArchiveError::SealMismatch);
        }
        if end != END_MARKER {
            return Err(ArchiveError::BadStructure {
                offset: self.offset - END_MARKER.len() as u64,
                detail: "the end marker is damaged".into(),
            });
        }
        let mut rest = Vec::new();
        let extra = (&mut self.source)
            .take(1 << 20)
            .read_to_end(&mut rest)
            .map_err(|e| self.read_error(e))?;
        if extra > 0 {
            return Err(ArchiveError::TrailingData {
                offset: self.offset,
                extra: extra as u64,
            });
        }
        Ok(())
    }

    /// The header frame, which must come first.
    pub fn header(&mut self) -> Result<Header, ArchiveError> {
        if let Some((header, _)) = &self.header {
            return Ok(header.clone());
        }
        let offset = self.offset;
        let Some(ReadFrame { tag, data, ok, .. }) = self.frame()? else {
            return Err(ArchiveError::BadStructure {
                offset,
                detail: "the archive ends before its header".into(),
            });
        };
        if tag != b"HEAD" {
            return Err(ArchiveError::BadStructure {
                offset,
                detail: "the first frame is not the header".into(),
            });
        }
        if !ok {
            return Err(ArchiveError::HeaderDamaged(
                "its SHA-256 does not match the checksum stored with it".into(),
            ));
        }
        let header: Header = serde_json::from_slice(&data)
            .map_err(|e| ArchiveError::HeaderDamaged(format!("not readable: {e}")))?;
        self.header = Some((header.clone(), sha256_hex(&data)));
        Ok(header)
    }

    /// The next part, or `None` once the manifest has been read.
    pub fn next_part(&mut self) -> Result<Option<RawPart>, ArchiveError> {
        if self.header.is_none() {
            self.header()?;
        }
        if self.manifest.is_some() {
            return Ok(None);
        }
        let offset = self.offset;
        let Some(ReadFrame {
            tag,
            name,
            data,
            ok,
        }) = self.frame()?
        else {
            return Err(ArchiveError::BadStructure {
                offset,
                detail: "the seal comes before the manifest".into(),
            });
        };
        match tag.as_slice() {
            b"PART" => {
                if !ok {
                    return Err(ArchiveError::PartDamaged { name });
                }
                let table = name
                    .split_once('-')
                    .map(|(_, table)| table.to_owned())
                    .ok_or_else(|| ArchiveError::UnexpectedPart { name: name.clone() })?;
                let sha256 = sha256_hex(&data);
                self.parts.push((name.clone(), sha256.clone()));
                Ok(Some(RawPart {
                    name,
                    table,
                    data,
                    sha256,
                }))
            }
            b"MANI" => {
                if !ok {
                    return Err(ArchiveError::ManifestDamaged(
                        "its SHA-256 does not match the checksum stored with it".into(),
                    ));
                }
                let manifest: Manifest = serde_json::from_slice(&data)
                    .map_err(|e| ArchiveError::ManifestDamaged(format!("not readable: {e}")))?;
                self.check_manifest(&manifest)?;
                self.manifest = Some(manifest);
                Ok(None)
            }
            _ => Err(ArchiveError::BadStructure {
                offset,
                detail: "a second header".into(),
            }),
        }
    }

    fn check_manifest(&self, manifest: &Manifest) -> Result<(), ArchiveError> {
        let (header, header_sha) = self
            .header
            .as_ref()
            .ok_or_else(|| ArchiveError::HeaderDamaged("missing".into()))?;
        if manifest.backup_id != header.backup_id {
            return Err(ArchiveError::ManifestFromOtherBackup {
                manifest_id: manifest.backup_id.clone(),
                manifest_created: holdfast_domain::Timestamp(manifest.created_at).to_rfc3339(),
                backup_id: header.backup_id.clone(),
            });
        }
        if &manifest.header_sha256 != header_sha {
            return Err(ArchiveError::ManifestDamaged(
                "it does not match this archive's header".into(),
            ));
        }
        for (position, (name, sha256)) in self.parts.iter().enumerate() {
            match manifest.parts.get(position) {
                Some(expected) if &expected.name == name => {
                    if &expected.sha256 != sha256 {
                        return Err(ArchiveError::PartForeign { name: name.clone() });
                    }
                }
                Some(expected) => {
                    let listed = manifest.parts.iter().any(|listed| &listed.name == name);
                    let seen = self.parts.iter().any(|(seen, _)| seen == &expected.name);
                    return Err(if !listed {
                        ArchiveError::UnexpectedPart { name: name.clone() }
                    } else if !seen {
                        ArchiveError::PartMissing {
                            name: expected.name.clone(),
                        }
                    } else {
                        ArchiveError::PartOutOfPlace {
                            name: name.clone(),
                            position: position + 1,
                            expected: expected.name.clone(),
                        }
                    });
                }
                None => return Err(ArchiveError::UnexpectedPart { name: name.clone() }),
            }
        }
        if let Some(missing) = manifest.parts.get(self.parts.len()) {
            return Err(ArchiveError::PartMissing {
                name: missing.name.clone(),
            });
        }
        Ok(())
    }

    /// Reads the seal and checks that nothing follows; returns the checked manifest.
    pub fn finish(mut self) -> Result<Manifest, ArchiveError> {
        while self.next_part()?.is_some() {}
        let offset = self.offset;
        if self.frame()?.is_some() {
            return Err(ArchiveError::BadStructure {
                offset,
                detail: "a frame after the manifest".into(),
            });
        }
        self.manifest
            .take()
            .ok_or_else(|| ArchiveError::ManifestDamaged("missing".into()))
    }
}

fn decrypt_error(error: age::DecryptError) -> ArchiveError {
    match error {
        age::DecryptError::NoMatchingKeys | age::DecryptError::KeyDecryptionFailed => {
            ArchiveError::WrongKey
        }
        age::DecryptError::DecryptionFailed => ArchiveError::WrongKey,
        age::DecryptError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            ArchiveError::Truncated {
                offset: 0,
                reading: "the encryption header".into(),
            }
        }
        other => ArchiveError::EncryptedDamaged {
            offset: 0,
            detail: format!("encryption header: {other}"),
        },
    }
}

fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Compresses rows (JSON arrays) as one part's data: JSON lines, zstd level 3.
pub fn encode_rows(lines: &[u8]) -> io::Result<Vec<u8>> {
    zstd::bulk::compress(lines, 3)
}

/// Decompresses and parses one part's rows; checks each row's width.
pub fn decode_rows(
    part: &RawPart,
    columns: usize,
) -> Result<Vec<Vec<serde_json::Value>>, ArchiveError> {
    let undecodable = |detail: String| ArchiveError::PartUndecodable {
        name: part.name.clone(),
        detail,
    };
    let mut lines = Vec::new();
    zstd::stream::read::Decoder::new(part.data.as_slice())
        .and_then(|mut d| d.read_to_end(&mut lines))
        .map_err(|e| undecodable(format!("not zstd data: {e}")))?;
    let mut rows = Vec::new();
    for (index, line) in lines.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let row: Vec<serde_json::Value> = serde_json::from_slice(line)
            .map_err(|e| undecodable(format!("row {}: {e}", index + 1)))?;
        if row.len() != columns {
            return Err(undecodable(format!(
                "row {} has {} values for {columns} columns",
                index + 1,
                row.len()
            )));
        }
        rows.push(row);
    }
    Ok(rows)
}
