//! Files only the account running Holdfast may read: the data folder and backup folders
//! (0700), the database, its copies and the backups (0600). Other local accounts on the server
//! must not be able to read customers off the disk. On systems without Unix permissions these
//! do nothing beyond creating what is asked for.

use std::fs::File;
use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) if needed and makes it private.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    set_mode(dir, 0o700)
}

/// Creates a new file (failing if it exists) that only its owner can read or write.
pub fn create_private_new(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Makes an existing file readable and writable by its owner only.
pub fn make_private(path: &Path) -> io::Result<()> {
    set_mode(path, 0o600)
}

/// Writes a secret (a key) to a new file only its owner can read, all or nothing: written and
/// synced under a temporary name, then linked into place, which fails if `path` exists.
pub fn write_secret_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_secret(path, contents, |temp, path| std::fs::hard_link(temp, path))
}

/// Writes a secret to `path` only its owner can read, all or nothing, replacing what is there:
/// written and synced under a temporary name, then renamed into place.
pub fn replace_secret(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_secret(path, contents, |temp, path| std::fs::rename(temp, path))
}

/// Writes `contents` to a private temporary file beside `path`, syncs it, and `place`s it.
fn write_secret(
    path: &Path,
    contents: &[u8],
    place: impl FnOnce(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    use std::io::Write as _;
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = folder.join(format!(
        ".{}.{}.partial",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&temp);
    let result = (|| {
        let mut file = create_private_new(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        place(&temp, path)?;
        if let Ok(dir) = File::open(folder) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&temp);
    result
}

/// Whether a file is unreadable to other accounts (no group or other permission bits).
pub fn is_private(path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 == 0)
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).map(|_| true)
    }
}

/// Overwrites a file with zeros, syncs it and removes it, so that its old contents are not
/// left in the blocks the file system frees. (Copy-on-write file systems and SSDs may still keep
/// old blocks; the README says to encrypt the disk as well.)
pub fn shred(path: &Path) -> io::Result<()> {
    use std::io::Write as _;
    let length = std::fs::metadata(path)?.len();
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = length;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()?;
    drop(file);
    std::fs::remove_file(path)
}

/// Holds the data folder for one process: `serve` while it runs, and the commands that swap
/// the database file (`db encrypt`, `db rekey`), which must not run beside a server. Released
/// when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

/// Takes the data folder's lock (`.holdfast.lock`); `Ok(None)` when another process holds it.
pub fn lock_folder(dir: &Path) -> io::Result<Option<FolderLock>> {
    let path = dir.join(".holdfast.lock");
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(FolderLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(error)) => Err(error),
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}
