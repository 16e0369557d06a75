//! File system access for bundles behind [`Storage`] (tests inject faults such as a full
//! volume), and the modes everything on the dump volume gets.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The file system operations a bundle write needs.
pub trait Storage: Send + Sync {
    /// Create one directory with mode [`DIR_MODE`]; `AlreadyExists` if it exists.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Create a new file with mode [`FILE_MODE`], write all of `data`, fsync it.
    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

/// Mode of every directory the sidecar creates on the dump volume: the group (65532, shared
/// by both kinds of sidecar) may write, setgid so new entries keep that group.
pub const DIR_MODE: u32 = 0o2770;
/// Mode of every bundle file: the group may read (`inspect` from the other kind of sidecar).
pub const FILE_MODE: u32 = 0o640;

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalStorage;

impl Storage for LocalStorage {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new().mode(DIR_MODE & 0o777).create(path)?;
        // mkdir drops the setgid bit and applies the umask: set the mode itself.
        fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
    }

    fn write_file(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)?;
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        f.write_all(data)?;
        f.sync_all()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        fs::File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
}
