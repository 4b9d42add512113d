//! Turning the failures of the file system, `commitlog`, `sled` and `bincode`
//! into [`StorageError`]s that say what the storage was doing and where.

use omnipaxos::errors::StorageError;
use std::{io, path::Path};

/// An operating-system failure while doing `operation` on `path`.
pub(crate) fn io(operation: &str, path: &Path, err: &io::Error) -> StorageError {
    StorageError::Io {
        operation: operation.to_owned(),
        path: Some(path.to_path_buf()),
        detail: err.to_string(),
    }
}

/// Data at `path` that is damaged, missing, or not ours.
pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> StorageError {
    StorageError::Corrupt {
        path: Some(path.to_path_buf()),
        detail: detail.into(),
    }
}

/// A value that bincode could not encode or decode; `what` names the value
/// and where it is stored.
pub(crate) fn serialization(what: impl Into<String>, err: &bincode::Error) -> StorageError {
    StorageError::Serialization {
        what: what.into(),
        detail: err.to_string(),
    }
}

/// A failure of the state database at `path` while doing `operation`.
pub(crate) fn sled(operation: &str, path: &Path, err: sled::Error) -> StorageError {
    match err {
        sled::Error::Io(e) => io(operation, path, &e),
        sled::Error::Corruption { at, .. } => corrupt(
            path,
            format!("the state database is corrupt (at {at:?}) during {operation}"),
        ),
        other => StorageError::Backend {
            operation: format!("{operation} in the state database at {}", path.display()),
            detail: other.to_string(),
        },
    }
}

/// A failure of `commitlog` while appending to the log in `dir`.
pub(crate) fn append(dir: &Path, err: commitlog::AppendError) -> StorageError {
    match err {
        commitlog::AppendError::Io(e) => io("append entries to the commitlog", dir, &e),
        other => StorageError::Backend {
            operation: format!("append entries to the commitlog in {}", dir.display()),
            detail: other.to_string(),
        },
    }
}

/// A failure of `commitlog` while reading the entry at commitlog offset
/// `offset` from the log in `dir`.
pub(crate) fn read(dir: &Path, offset: u64, err: commitlog::ReadError) -> StorageError {
    match err {
        commitlog::ReadError::Io(e) => io(&format!("read commitlog offset {offset}"), dir, &e),
        commitlog::ReadError::CorruptLog => corrupt(
            dir,
            format!("a commitlog segment fails its checksum near offset {offset}"),
        ),
        commitlog::ReadError::NoSuchSegment => corrupt(
            dir,
            format!("no commitlog segment holds offset {offset}, which the log needs"),
        ),
    }
}

/// The error every call returns once a write failed half-way: the files may
/// hold a partial write that only [`open`](crate::persistent_storage::PersistentStorage::open)
/// knows how to cut away.
pub(crate) fn poisoned(operation: &str, root: &Path, cause: &str) -> StorageError {
    StorageError::Backend {
        operation: operation.to_owned(),
        detail: format!(
            "the storage at {} stopped after an earlier failure ({cause}); reopen it to recover",
            root.display()
        ),
    }
}
