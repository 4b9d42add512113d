//! The values that are written rarely and may be large, each in a checksummed
//! file of its own instead of the state database: the snapshot, the
//! stop-sign and how the previous configuration ended (both carry the
//! user's metadata), the origin ids of the held log with the origin table
//! as of the last checkpoint, and the redo record of a batch that rewrites
//! the log's tail.
//!
//! Why not in sled: sled 0.34 keeps a value inside the leaf page of its key
//! and rewrites the whole page every few updates of *any* key on it (page
//! consolidation). A page larger than a quarter of a segment goes to a blob
//! file, and a replaced blob is deleted only when sled later reclaims the log
//! segment that pointed to it, which a small, hot database rarely does. A
//! multi-megabyte snapshot beside the state record, which every commit
//! rewrites, was therefore copied into a new blob every few commits and the
//! copies were kept: 4 GB of blobs for 11 MB of data, and commits that slowed
//! down with the snapshot's size.
//!
//! The state record that every commit rewrites therefore holds only numbers
//! and references of fixed size. A record is written once, into `records/<kind>-<generation>` (a
//! generation is never reused while its file may exist), synced with its
//! directory, and only then named, with its length and checksum, by the state
//! record that the commit point flushes. A file the committed state does not
//! name is garbage whatever happened: a record written by a batch that never
//! committed, or one that a committed batch replaced but a crash kept from
//! being deleted. [`RecordFiles::sweep`] deletes those on open.
//!
//! A file is a 20-byte header (the magic, the payload's length as a
//! little-endian u64, its CRC32C as a little-endian u32) and the payload.

use crate::{error, segments};
use omnipaxos::storage::StorageResult;
use serde::{Deserialize, Serialize};
use std::{
    fs::{self, File},
    io::{ErrorKind, Read, Write},
    path::{Path, PathBuf},
};

/// The directory of the record files, inside the storage's directory.
pub(crate) const RECORDS_DIR: &str = "records";
/// The first bytes of every record file.
const MAGIC: [u8; 8] = *b"OPXREC01";
/// The size of a record file's header.
const HEADER_BYTES: u64 = 8 + 8 + 4;

/// What the state record keeps of a record file: enough to find it and to
/// prove that the file found is the one committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecordRef {
    /// Names the file; unique among the files this storage ever wrote.
    pub(crate) generation: u64,
    /// The payload's length in bytes.
    pub(crate) len: u64,
    /// The payload's CRC32C.
    pub(crate) crc: u32,
}

/// The kinds of record file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The snapshot of the compacted prefix.
    Snapshot,
    /// The stop-sign, the entry after the log.
    StopSign,
    /// How the previous configuration ended.
    PreviousEnd,
    /// The entries of a batch that replaces the log's tail, between its
    /// commit point and the end of the rewrite.
    Redo,
    /// The origin ids of the held log and the origin table, as of the
    /// checkpoint that names the file (the write-ahead log records after it
    /// carry the changes since).
    Origins,
}

impl Kind {
    pub(crate) const ALL: [Self; 5] = [
        Self::Snapshot,
        Self::StopSign,
        Self::PreviousEnd,
        Self::Redo,
        Self::Origins,
    ];

    fn prefix(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot-",
            Self::StopSign => "stopsign-",
            Self::PreviousEnd => "previous_end-",
            Self::Redo => "redo-",
            Self::Origins => "origins-",
        }
    }

    /// What the file holds, for error messages.
    pub(crate) fn what(self) -> &'static str {
        match self {
            Self::Snapshot => "the snapshot",
            Self::StopSign => "the stop-sign",
            Self::PreviousEnd => "the previous configuration's end",
            Self::Redo => "the redo record",
            Self::Origins => "the origin ids",
        }
    }
}

/// The record files a state record names, one slot per kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Named {
    snapshot: Option<RecordRef>,
    stopsign: Option<RecordRef>,
    previous_end: Option<RecordRef>,
    redo: Option<RecordRef>,
    origins: Option<RecordRef>,
}

/// The slots of [`Named`] in format versions 2 and 3, which had no origin
/// ids: read only to upgrade a state record of those versions (and written
/// by tests that make such a directory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NamedV3 {
    snapshot: Option<RecordRef>,
    stopsign: Option<RecordRef>,
    previous_end: Option<RecordRef>,
    redo: Option<RecordRef>,
}

impl From<NamedV3> for Named {
    fn from(old: NamedV3) -> Self {
        Self {
            snapshot: old.snapshot,
            stopsign: old.stopsign,
            previous_end: old.previous_end,
            redo: old.redo,
            origins: None,
        }
    }
}

#[cfg(test)]
impl From<Named> for NamedV3 {
    /// For tests that write an old directory: the origins slot, which the
    /// old format lacks, must be empty.
    fn from(named: Named) -> Self {
        assert!(named.origins.is_none(), "an old format holds no origin ids");
        Self {
            snapshot: named.snapshot,
            stopsign: named.stopsign,
            previous_end: named.previous_end,
            redo: named.redo,
        }
    }
}

impl Named {
    fn slot(&mut self, kind: Kind) -> &mut Option<RecordRef> {
        match kind {
            Kind::Snapshot => &mut self.snapshot,
            Kind::StopSign => &mut self.stopsign,
            Kind::PreviousEnd => &mut self.previous_end,
            Kind::Redo => &mut self.redo,
            Kind::Origins => &mut self.origins,
        }
    }

    /// The file of `kind` named, if any.
    pub(crate) fn get(mut self, kind: Kind) -> Option<RecordRef> {
        *self.slot(kind)
    }

    /// Names `record` (or nothing) for `kind`.
    pub(crate) fn set(&mut self, kind: Kind, record: Option<RecordRef>) {
        *self.slot(kind) = record;
    }

    /// Every file named.
    pub(crate) fn all(self) -> Vec<(Kind, RecordRef)> {
        Kind::ALL
            .into_iter()
            .filter_map(|kind| Some((kind, self.get(kind)?)))
            .collect()
    }
}

/// A record file that [`RecordFiles::sweep`] deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Swept {
    pub(crate) kind: Kind,
    pub(crate) path: PathBuf,
    pub(crate) bytes: u64,
}

/// The record files of one storage.
#[derive(Debug)]
pub(crate) struct RecordFiles {
    dir: PathBuf,
    /// The generation the next written file gets: past every generation
    /// seen on disk or in the state record.
    next_generation: u64,
}

impl RecordFiles {
    /// The record files under the storage directory `root`, checking that
    /// the directory holds nothing but record files.
    pub(crate) fn open(root: &Path) -> StorageResult<Self> {
        let mut files = Self {
            dir: root.join(RECORDS_DIR),
            next_generation: 1,
        };
        for (_, generation, _) in files.list()? {
            files.next_generation = files.next_generation.max(generation + 1);
        }
        Ok(files)
    }

    /// Makes sure `r`'s generation is never written again.
    pub(crate) fn note_referenced(&mut self, r: &RecordRef) {
        self.next_generation = self.next_generation.max(r.generation + 1);
    }

    /// Where the record file of `kind` and `generation` is.
    pub(crate) fn path(&self, kind: Kind, generation: u64) -> PathBuf {
        self.dir.join(format!("{}{generation:020}", kind.prefix()))
    }

    /// The record files on disk, as (kind, generation, path).
    fn list(&self) -> StorageResult<Vec<(Kind, u64, PathBuf)>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(error::io("list the record files", &self.dir, &e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| error::io("list the record files", &self.dir, &e))?;
            let path = entry.path();
            let parsed = entry.file_name().to_str().and_then(|name| {
                Kind::ALL.into_iter().find_map(|kind| {
                    let digits = name.strip_prefix(kind.prefix())?;
                    let ok = digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit());
                    Some((kind, digits.parse::<u64>().ok().filter(|_| ok)?))
                })
            });
            match parsed {
                Some((kind, generation)) if path.is_file() => out.push((kind, generation, path)),
                _ => {
                    return Err(error::corrupt(
                        &path,
                        "unexpected entry in the records directory: it holds only files named \
                         <kind>-<20 digits>, the kind one of snapshot, stopsign, previous_end, \
                         redo and origins",
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Writes `payload` as a new record file of `kind` and syncs it and its
    /// directory, so that a state record naming it may be committed.
    pub(crate) fn write(&mut self, kind: Kind, payload: &[u8]) -> StorageResult<RecordRef> {
        if !self.dir.exists() {
            fs::create_dir_all(&self.dir)
                .map_err(|e| error::io("create the records directory", &self.dir, &e))?;
            if let Some(root) = self.dir.parent() {
                segments::sync_dir(root)?;
            }
        }
        let record = RecordRef {
            generation: self.next_generation,
            len: payload.len() as u64,
            crc: crc32c::crc32c(payload),
        };
        self.next_generation += 1;
        let path = self.path(kind, record.generation);
        let mut header = [0u8; HEADER_BYTES as usize];
        header[..8].copy_from_slice(&MAGIC);
        header[8..16].copy_from_slice(&record.len.to_le_bytes());
        header[16..].copy_from_slice(&record.crc.to_le_bytes());
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&path)?;
            file.write_all(&header)?;
            file.write_all(payload)?;
            file.sync_all()
        };
        write().map_err(|e| error::io(&format!("write {}", kind.what()), &path, &e))?;
        segments::sync_dir(&self.dir)?;
        Ok(record)
    }

    /// Reads the payload of the committed record `r`, checking that the file
    /// is the one the state record names: its length, header and checksum.
    pub(crate) fn read(&self, kind: Kind, r: &RecordRef) -> StorageResult<Vec<u8>> {
        let path = self.path(kind, r.generation);
        let mut file = File::open(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => error::corrupt(
                &path,
                format!("{} that the state record names is missing", kind.what()),
            ),
            _ => error::io(&format!("open {}", kind.what()), &path, &e),
        })?;
        let size = file
            .metadata()
            .map_err(|e| error::io(&format!("stat {}", kind.what()), &path, &e))?
            .len();
        // Checked before allocating: the length comes from the file system,
        // and must match what the checksummed state record says.
        if size != HEADER_BYTES + r.len {
            return Err(error::corrupt(
                &path,
                format!(
                    "{} file is {size} bytes; the state record says {}",
                    kind.what(),
                    HEADER_BYTES + r.len
                ),
            ));
        }
        let len = usize::try_from(size)
            .map_err(|_| error::corrupt(&path, format!("{} is too large to read", kind.what())))?;
        let mut bytes = Vec::with_capacity(len);
        file.read_to_end(&mut bytes)
            .map_err(|e| error::io(&format!("read {}", kind.what()), &path, &e))?;
        let header_ok = bytes.len() == len
            && bytes[..8] == MAGIC
            && bytes[8..16] == r.len.to_le_bytes()
            && bytes[16..20] == r.crc.to_le_bytes();
        if !header_ok || crc32c::crc32c(&bytes[HEADER_BYTES as usize..]) != r.crc {
            return Err(error::corrupt(
                &path,
                format!("{} fails its checksum", kind.what()),
            ));
        }
        bytes.drain(..HEADER_BYTES as usize);
        Ok(bytes)
    }

    /// Deletes the record file of `r`, which no committed state names any
    /// more. A file already gone is fine. No directory sync: if the deletion
    /// is lost in a crash, the next open sweeps the file.
    pub(crate) fn remove(&self, kind: Kind, r: &RecordRef) -> StorageResult<()> {
        let path = self.path(kind, r.generation);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(error::io(&format!("remove {}", kind.what()), &path, &e)),
        }
    }

    /// Deletes every record file that `keep` does not name, and returns what
    /// it deleted.
    pub(crate) fn sweep(&self, keep: &[(Kind, RecordRef)]) -> StorageResult<Vec<Swept>> {
        let mut swept = Vec::new();
        for (kind, generation, path) in self.list()? {
            if keep
                .iter()
                .any(|(k, r)| *k == kind && r.generation == generation)
            {
                continue;
            }
            let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(|e| {
                error::io(
                    &format!("remove an unreferenced copy of {}", kind.what()),
                    &path,
                    &e,
                )
            })?;
            swept.push(Swept { kind, path, bytes });
        }
        if !swept.is_empty() {
            segments::sync_dir(&self.dir)?;
        }
        Ok(swept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnipaxos::errors::StorageError;

    #[test]
    fn a_written_record_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = RecordFiles::open(dir.path()).unwrap();
        let r = files.write(Kind::Snapshot, b"hello").unwrap();
        assert_eq!(files.read(Kind::Snapshot, &r).unwrap(), b"hello");
        let again = files.write(Kind::Snapshot, b"world").unwrap();
        assert!(again.generation > r.generation);
    }

    #[test]
    fn generations_continue_past_files_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let r = RecordFiles::open(dir.path())
            .unwrap()
            .write(Kind::Redo, b"x")
            .unwrap();
        let mut reopened = RecordFiles::open(dir.path()).unwrap();
        let next = reopened.write(Kind::Snapshot, b"y").unwrap();
        assert!(next.generation > r.generation);
    }

    #[test]
    fn a_damaged_or_mismatched_file_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = RecordFiles::open(dir.path()).unwrap();
        let r = files.write(Kind::Snapshot, b"payload").unwrap();
        let path = files.path(Kind::Snapshot, r.generation);

        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = files.read(Kind::Snapshot, &r).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");

        fs::write(&path, b"short").unwrap();
        let err = files.read(Kind::Snapshot, &r).unwrap_err();
        assert!(err.to_string().contains("bytes"), "{err}");

        fs::remove_file(&path).unwrap();
        let err = files.read(Kind::Snapshot, &r).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn sweep_deletes_exactly_the_unnamed_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = RecordFiles::open(dir.path()).unwrap();
        let old = files.write(Kind::Snapshot, b"old").unwrap();
        let new = files.write(Kind::Snapshot, b"new").unwrap();
        let redo = files.write(Kind::Redo, b"redo").unwrap();
        let swept = files.sweep(&[(Kind::Snapshot, new)]).unwrap();
        let mut gone: Vec<_> = swept.iter().map(|s| (s.kind, s.bytes)).collect();
        gone.sort_by_key(|(_, b)| *b);
        assert_eq!(
            gone,
            vec![
                (Kind::Snapshot, HEADER_BYTES + 3),
                (Kind::Redo, HEADER_BYTES + 4)
            ]
        );
        assert!(files.read(Kind::Snapshot, &new).is_ok());
        assert!(files.read(Kind::Snapshot, &old).is_err());
        assert!(files.read(Kind::Redo, &redo).is_err());
    }

    #[test]
    fn a_foreign_file_in_the_records_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(RECORDS_DIR)).unwrap();
        fs::write(dir.path().join(RECORDS_DIR).join("notes.txt"), b"hi").unwrap();
        let err = RecordFiles::open(dir.path()).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
    }
}
