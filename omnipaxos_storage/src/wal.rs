//! [`Wal`]: the write-ahead log of a [`PersistentStorage`](crate::persistent_storage::PersistentStorage),
//! one file of checksummed records, each appended and synced once.
//!
//! # Record format
//!
//! ```text
//! magic    4 bytes   "OPWL"
//! len      u32 LE    the payload's length
//! crc      u32 LE    CRC32C of seq and payload
//! seq      u64 LE    the record's sequence number, one more than the last
//! payload  len bytes what the storage wrote (the module does not look)
//! ```
//!
//! A write appends one record with a single `write` and syncs the file with
//! one `fdatasync` (a deferred write leaves that to the next [`Wal::sync`]
//! or synced append). The file only grows between two checkpoints, after which
//! it is cut back to nothing.
//!
//! # Reading it back
//!
//! [`Wal::open`] reads the whole file and checks the records in order. A
//! record that is incomplete or fails its checksum ends the valid part:
//!
//! * if nothing valid follows it, it is the record a crash interrupted (its
//!   write never returned, so nobody relied on it). It is reported, and cut
//!   off by [`Wal::cut_torn_tail`] once the storage's open has checked
//!   everything else.
//! * if a valid record follows it, the file was damaged after it was
//!   written: records that were acknowledged are unreadable. That is a
//!   [`StorageError::Corrupt`] naming the file and the offset, and nothing is
//!   changed.

use crate::{error, segments};
use omnipaxos::{errors::StorageError, storage::StorageResult};
use std::{
    fs::{self, File, OpenOptions},
    io::ErrorKind,
    ops::Range,
    path::{Path, PathBuf},
};

/// The name of the log's file in the storage's directory.
pub(crate) const WAL_FILE: &str = "wal";
/// The first bytes of every record.
const MAGIC: [u8; 4] = *b"OPWL";
/// The size of a record's header: magic, length, checksum, sequence number.
pub(crate) const HEADER_BYTES: usize = 20;

/// One valid record found by [`Wal::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// Its sequence number.
    pub(crate) seq: u64,
    /// Where its payload is in [`Scan::data`].
    pub(crate) payload: Range<usize>,
}

/// What [`Wal::open`] read from the file.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The file's valid part.
    pub(crate) data: Vec<u8>,
    /// The valid records, in order; their sequence numbers ascend by one.
    pub(crate) records: Vec<Found>,
    /// Bytes of an interrupted last record that open cut off.
    pub(crate) torn_bytes: u64,
}

/// The write-ahead log file, open for appending.
#[derive(Debug)]
pub(crate) struct Wal {
    /// Where the file is, for error messages.
    path: PathBuf,
    file: File,
    /// The length of the valid records in the file: where the next goes.
    len: u64,
    /// Whether bytes of an interrupted record follow the valid ones.
    torn: bool,
}

impl Wal {
    /// Opens the log in `root`, checks its records and cuts off an
    /// interrupted last one. A missing file is created if `create` is set
    /// (a new storage, or one being upgraded from a format without a log)
    /// and is an error otherwise, since acknowledged writes may have been in
    /// it.
    pub(crate) fn open(root: &Path, create: bool) -> StorageResult<(Self, Scan)> {
        let path = root.join(WAL_FILE);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == ErrorKind::NotFound && create => Vec::new(),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(error::corrupt(
                    &path,
                    "the write-ahead log is missing: writes acknowledged after the last \
                     checkpoint would be lost",
                ));
            }
            Err(e) => return Err(error::io("read the write-ahead log", &path, &e)),
        };
        let mut scan = scan(&path, data)?;
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| error::io("open the write-ahead log", &path, &e))?;
        if !existed {
            segments::sync_dir(root)?;
        }
        let len = scan.data.len() as u64;
        scan.data.shrink_to_fit();
        let torn = scan.torn_bytes > 0;
        Ok((
            Self {
                path,
                file,
                len,
                torn,
            },
            scan,
        ))
    }

    /// Cuts off the interrupted last record that [`open`](Self::open)
    /// found, if any; until then nothing may be appended. Separate from
    /// `open` so that an open that fails for another reason changes nothing.
    pub(crate) fn cut_torn_tail(&mut self) -> StorageResult<()> {
        if self.torn {
            self.file
                .set_len(self.len)
                .and_then(|()| self.file.sync_all())
                .map_err(|e| {
                    error::io(
                        "cut an interrupted record off the write-ahead log",
                        &self.path,
                        &e,
                    )
                })?;
            self.torn = false;
        }
        Ok(())
    }

    /// The bytes of valid records in the file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Clears `buf` and puts a header for record `seq` in front; the caller
    /// appends the payload and hands the buffer to [`append`](Self::append).
    pub(crate) fn begin(buf: &mut Vec<u8>, seq: u64) {
        buf.clear();
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&[0; 8]);
        buf.extend_from_slice(&seq.to_le_bytes());
        debug_assert_eq!(buf.len(), HEADER_BYTES);
    }

    /// Syncs the records appended since the last sync.
    pub(crate) fn sync(&mut self) -> StorageResult<()> {
        self.file
            .sync_data()
            .map_err(|e| error::io("sync the write-ahead log", &self.path, &e))
    }

    /// Fills in the header of the record [`begin`](Self::begin) started in
    /// `buf` and appends it; with `sync`, syncs the file: the record's commit
    /// point. Without, the record commits at the next [`sync`](Self::sync)
    /// or synced append (one file, so a sync covers every record before it),
    /// and a crash before then may lose it and everything after it; the next
    /// open cuts what it finds torn. Returns the record's size. A failure may
    /// leave part of the record in the file, which the next open cuts off.
    pub(crate) fn append(&mut self, buf: &mut [u8], sync: bool) -> StorageResult<u64> {
        debug_assert!(!self.torn, "appending before the torn tail is cut");
        let payload_len = buf.len() - HEADER_BYTES;
        let len = u32::try_from(payload_len).map_err(|_| StorageError::Backend {
            operation: format!("append to the write-ahead log {}", self.path.display()),
            detail: format!("a batch of {payload_len} bytes exceeds the 4 GiB record limit"),
        })?;
        buf[4..8].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c(&buf[12..]);
        buf[8..12].copy_from_slice(&crc.to_le_bytes());
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::FileExt;
            self.file.write_all_at(buf, self.len)?;
            if sync {
                self.file.sync_data()?;
            }
            Ok(())
        };
        write().map_err(|e| error::io("append to the write-ahead log", &self.path, &e))?;
        self.len += buf.len() as u64;
        Ok(buf.len() as u64)
    }

    /// Empties the file, once a checkpoint holds everything in it (which
    /// also cuts a torn tail).
    pub(crate) fn reset(&mut self) -> StorageResult<()> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| error::io("empty the write-ahead log", &self.path, &e))?;
        self.len = 0;
        self.torn = false;
        Ok(())
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The record starting at `pos`, if a whole valid one does, and where it
/// ends.
fn record_at(data: &[u8], pos: usize) -> Option<(Found, usize)> {
    let header = data.get(pos..pos + HEADER_BYTES)?;
    if header[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    let end = (pos + HEADER_BYTES).checked_add(len)?;
    let checked = data.get(pos + 12..end)?;
    (crc32c::crc32c(checked) == crc).then_some((
        Found {
            seq,
            payload: pos + HEADER_BYTES..end,
        },
        end,
    ))
}

/// Checks the records in `data`, as the module documentation describes.
fn scan(path: &Path, mut data: Vec<u8>) -> StorageResult<Scan> {
    let mut records: Vec<Found> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        match record_at(&data, pos) {
            Some((found, end)) => {
                let expected = records.last().map(|last| last.seq + 1);
                if expected.is_some_and(|seq| seq != found.seq) {
                    return Err(error::corrupt(
                        path,
                        format!(
                            "the write-ahead log record at offset {pos} has sequence number {} \
                             where {} belongs",
                            found.seq,
                            expected.unwrap_or_default()
                        ),
                    ));
                }
                records.push(found);
                pos = end;
            }
            None => {
                // A valid record anywhere after the bad one means the bad
                // one was written whole once and damaged since.
                let later = (pos + 1..data.len().saturating_sub(HEADER_BYTES - 1))
                    .filter(|&q| data[q..q + 4] == MAGIC)
                    .find_map(|q| record_at(&data, q).map(|(found, _)| (q, found.seq)));
                if let Some((q, seq)) = later {
                    return Err(error::corrupt(
                        path,
                        format!(
                            "the write-ahead log record at offset {pos} is damaged (bad length or \
                             checksum) but a valid record (sequence number {seq}) follows at \
                             offset {q}: acknowledged writes are unreadable"
                        ),
                    ));
                }
                let torn_bytes = (data.len() - pos) as u64;
                data.truncate(pos);
                return Ok(Scan {
                    data,
                    records,
                    torn_bytes,
                });
            }
        }
    }
    Ok(Scan {
        data,
        records,
        torn_bytes: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn write_records(dir: &Path, payloads: &[&[u8]]) -> Vec<u8> {
        let (mut wal, _) = Wal::open(dir, true).unwrap();
        let mut buf = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            Wal::begin(&mut buf, i as u64 + 1);
            buf.extend_from_slice(p);
            wal.append(&mut buf, true).unwrap();
        }
        fs::read(dir.join(WAL_FILE)).unwrap()
    }

    fn payloads(scan: &Scan) -> Vec<(u64, Vec<u8>)> {
        scan.records
            .iter()
            .map(|r| (r.seq, scan.data[r.payload.clone()].to_vec()))
            .collect()
    }

    #[test]
    fn records_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), &[b"one", b"", b"three"]);
        let (wal, scan) = Wal::open(dir.path(), false).unwrap();
        assert_eq!(
            payloads(&scan),
            vec![(1, b"one".to_vec()), (2, vec![]), (3, b"three".to_vec())]
        );
        assert_eq!(scan.torn_bytes, 0);
        assert_eq!(wal.len(), (3 * HEADER_BYTES + 8) as u64);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write_records(dir.path(), &[b"kept", b"interrupted"]);
        let whole = HEADER_BYTES + 4;
        for cut in [whole + 1, whole + HEADER_BYTES, bytes.len() - 1] {
            fs::write(dir.path().join(WAL_FILE), &bytes[..cut]).unwrap();
            let (mut wal, scan) = Wal::open(dir.path(), false).unwrap();
            assert_eq!(fs::read(dir.path().join(WAL_FILE)).unwrap().len(), cut);
            wal.cut_torn_tail().unwrap();
            assert_eq!(payloads(&scan), vec![(1, b"kept".to_vec())]);
            assert_eq!(scan.torn_bytes, (cut - whole) as u64);
            assert_eq!(fs::read(dir.path().join(WAL_FILE)).unwrap().len(), whole);
        }
    }

    #[test]
    fn a_damaged_record_followed_by_a_valid_one_is_corrupt_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = write_records(dir.path(), &[b"first", b"second", b"third"]);
        bytes[HEADER_BYTES + 2] ^= 0x01;
        fs::write(dir.path().join(WAL_FILE), &bytes).unwrap();
        let err = Wal::open(dir.path(), false).unwrap_err();
        assert!(
            matches!(&err, StorageError::Corrupt { detail, .. }
                if detail.contains("offset 0") && detail.contains("sequence number 2")),
            "{err}"
        );
        assert_eq!(fs::read(dir.path().join(WAL_FILE)).unwrap(), bytes);
    }

    #[test]
    fn a_gap_in_the_sequence_numbers_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), true).unwrap();
        let mut buf = Vec::new();
        for seq in [4, 6] {
            Wal::begin(&mut buf, seq);
            wal.append(&mut buf, true).unwrap();
        }
        let err = Wal::open(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("sequence number 6"), "{err}");
    }

    #[test]
    fn a_missing_log_is_refused_unless_it_may_be_created() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Wal::open(dir.path(), false),
            Err(StorageError::Corrupt { .. })
        ));
        let (mut wal, scan) = Wal::open(dir.path(), true).unwrap();
        assert!(scan.records.is_empty());
        let mut buf = Vec::new();
        Wal::begin(&mut buf, 1);
        wal.append(&mut buf, true).unwrap();
        wal.reset().unwrap();
        let (_, scan) = Wal::open(dir.path(), false).unwrap();
        assert!(scan.records.is_empty());
    }
}
