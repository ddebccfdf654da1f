//! File-system helpers: secret files of mode 0600, and outputs that appear whole or
//! not at all.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::SealError;

/// Writes a new secret file with mode 0600; refuses to replace an existing file.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), SealError> {
    let mut f =
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => SealError::Exists(path.to_owned()),
            _ => SealError::io(path, e),
        })?;
    f.write_all(contents).and_then(|()| f.sync_all()).map_err(|e| SealError::io(path, e))
}

/// Reads a secret file, refusing one that group or others may read.
pub fn read_secret_file(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, SealError> {
    let meta = fs::metadata(path).map_err(|e| SealError::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SealError::InsecurePermissions { path: path.to_owned(), mode });
    }
    fs::read(path).map(zeroize::Zeroizing::new).map_err(|e| SealError::io(path, e))
}

/// An output file that becomes visible under its name only when [`AtomicOutput::commit`]
/// succeeds. Until then it is a 0600 temporary file beside the target, removed if the
/// value is dropped, so a failure never leaves a half-written output.
pub struct AtomicOutput {
    target: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl AtomicOutput {
    /// Prepares to write `target`, refusing if it exists already.
    pub fn create(target: &Path) -> Result<Self, SealError> {
        if target.exists() {
            return Err(SealError::Exists(target.to_owned()));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp =
            tempfile::Builder::new().prefix(".perun-partial-").tempfile_in(dir).map_err(|e| SealError::io(dir, e))?;
        Ok(Self { target: target.to_owned(), tmp })
    }

    /// The file to write into.
    pub fn file(&mut self) -> &mut fs::File {
        self.tmp.as_file_mut()
    }

    /// Flushes to disk and moves the file to its name (no overwrite).
    pub fn commit(self) -> Result<(), SealError> {
        self.tmp.as_file().sync_all().map_err(|e| SealError::io(&self.target, e))?;
        let target = self.target;
        self.tmp.persist_noclobber(&target).map_err(|e| match e.error.kind() {
            std::io::ErrorKind::AlreadyExists => SealError::Exists(target.clone()),
            _ => SealError::io(&target, e.error),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_0600_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_secret_file(&p, b"s").unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(write_secret_file(&p, b"t"), Err(SealError::Exists(_))));
        assert_eq!(&*read_secret_file(&p).unwrap(), b"s");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(read_secret_file(&p), Err(SealError::InsecurePermissions { .. })));
    }

    #[test]
    fn an_uncommitted_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        {
            let mut o = AtomicOutput::create(&target).unwrap();
            o.file().write_all(b"half").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut o = AtomicOutput::create(&target).unwrap();
        o.file().write_all(b"whole").unwrap();
        o.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"whole");
        assert!(matches!(AtomicOutput::create(&target), Err(SealError::Exists(_))));
    }
}
