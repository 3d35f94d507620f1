//! Whole files sealed with the backup key (age): the copy of an SQLite database `holdfast
//! upgrade` takes first. Such a copy holds every customer, so it is encrypted like a backup,
//! lives beside the backups and is pruned with them; `holdfast backup unseal` turns it back
//! into a database file for a rollback.

use super::Key;
use anyhow::Context as _;
use std::io::Write as _;
use std::path::Path;

/// The start of a sealed pre-upgrade copy's name: `pre-upgrade-v8-20261203T102206Z.db.age`.
pub const PRE_UPGRADE_PREFIX: &str = "pre-upgrade-";

/// Encrypts `source` into `target` (which must not exist): written as `.NAME.partial`, synced,
/// then renamed, so a crash never leaves a file that looks complete.
pub fn seal(key: &Key, source: &Path, target: &Path) -> anyhow::Result<()> {
    transform(source, target, |input, output| {
        let mut writer = key.encryptor()?.wrap_output(output)?;
        std::io::copy(input, &mut writer)?;
        writer.finish()?;
        Ok(())
    })
}

/// Decrypts a sealed file into `target` (which must not exist), private to this account.
pub fn unseal(key: &Key, source: &Path, target: &Path) -> anyhow::Result<()> {
    transform(source, target, |input, output| {
        let mut reader = key
            .decrypt(input.try_clone()?)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::io::copy(&mut reader, output)?;
        Ok(())
    })
}

fn transform(
    source: &Path,
    target: &Path,
    work: impl FnOnce(&mut std::fs::File, &mut std::fs::File) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(!target.exists(), "{} already exists", target.display());
    let folder = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .context("the target has no file name")?
        .to_string_lossy();
    let partial = folder.join(format!(".{name}.partial"));
    let _ = std::fs::remove_file(&partial);
    let result = (|| {
        let mut input =
            std::fs::File::open(source).with_context(|| format!("reading {}", source.display()))?;
        let mut output = crate::files::create_private_new(&partial)
            .with_context(|| format!("writing {}", partial.display()))?;
        work(&mut input, &mut output)?;
        output.flush()?;
        output.sync_all()?;
        std::fs::rename(&partial, target)
            .with_context(|| format!("moving {} into place", target.display()))?;
        if let Ok(dir) = std::fs::File::open(folder) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_file_opens_with_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("holdfast.db");
        std::fs::write(&plain, b"SQLite format 3\0 customers").unwrap();
        let (text, _) = Key::generate();
        let key = Key::identity_from_text(&text).unwrap();
        let sealed = dir.path().join("pre-upgrade-v8-x.db.age");
        seal(&key, &plain, &sealed).unwrap();
        let bytes = std::fs::read(&sealed).unwrap();
        assert!(!bytes.windows(9).any(|w| w == b"customers"));
        let back = dir.path().join("back.db");
        unseal(&key, &sealed, &back).unwrap();
        assert_eq!(
            std::fs::read(&back).unwrap(),
            std::fs::read(&plain).unwrap()
        );
        let (other, _) = Key::generate();
        let other = Key::identity_from_text(&other).unwrap();
        let error = unseal(&other, &sealed, &dir.path().join("no.db")).unwrap_err();
        assert!(error.to_string().contains("wrong key"), "{error}");
        assert!(!dir.path().join("no.db").exists());
        assert!(seal(&key, &plain, &sealed).is_err(), "never overwrites");
    }
}
