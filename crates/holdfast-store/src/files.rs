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

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}
