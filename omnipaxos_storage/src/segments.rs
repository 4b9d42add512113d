//! The commit log's files, read and mended before `commitlog` opens them.
//!
//! `commitlog` 0.2.0 trusts its directory: a segment without an index, an
//! empty or odd-sized index, or a file name that is not 20 digits makes it
//! panic, and it neither cuts a torn tail nor syncs its files. This module
//! checks the directory against the range of offsets the state database
//! says is committed, and only then lets `commitlog` open it:
//!
//! * files that hold only offsets past the committed end (a write that never
//!   reached its commit point) or only offsets below the committed start (a
//!   trim whose clean-up was interrupted) are removed;
//! * the segment holding the last committed entry is cut right after that
//!   entry, once its checksum proves the entry is whole, and the index
//!   entries past it are zeroed;
//! * everything else that the committed range needs must be there and
//!   consistent, or the open fails with [`StorageError::Corrupt`] naming the
//!   file, and nothing is changed.
//!
//! The file format is commitlog's version 1 (hence the exact version pin in
//! the manifest): a segment `<20-digit base offset>.log` starts with the magic
//! `ff ff` and holds messages of a 20-byte header (offset u64, size u32, CRC32C
//! u32, reserved u16, metadata size u16, all little-endian) and a body; its
//! index `<base>.index` holds 8-byte entries (offset relative to the base u32,
//! position in the segment u32), one per message, followed by zeros.

use crate::error;
use commitlog::LogOptions;
use omnipaxos::{errors::StorageError, storage::StorageResult};
use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, ErrorKind, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

/// The size of a message header in a segment.
pub(crate) const HEADER_BYTES: u64 = 20;
/// The size of one index entry.
const INDEX_ENTRY_BYTES: u64 = 8;
/// The magic at the start of every version 1 segment.
const MAGIC: [u8; 2] = [0xff, 0xff];
/// How many zero entries to add to an index that is exactly full, so that
/// `commitlog` opens it for writing rather than as a closed, read-only one.
const INDEX_PAD_ENTRIES: u64 = 8192;

/// What [`LogOptions`] says, read out of it (it has no getters).
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// The options themselves, to open the log with.
    pub(crate) options: LogOptions,
    /// The directory of the segments and indexes.
    pub(crate) dir: PathBuf,
    /// The size at which a segment is closed and a new one started.
    pub(crate) segment_max_bytes: u64,
    /// The most bytes one `append` call may write, headers included.
    pub(crate) message_max_bytes: u64,
    /// The size a new index file starts with.
    pub(crate) index_max_bytes: u64,
}

impl Layout {
    /// Reads the settings out of `options`.
    ///
    /// `LogOptions` 0.2.0 keeps its fields private and offers no getters, so
    /// they are taken from its `Debug` output and then checked by building
    /// options from them and comparing the two `Debug` outputs: a directory
    /// name that does not survive the round trip is refused rather than
    /// guessed at.
    pub(crate) fn from_options(options: LogOptions) -> StorageResult<Self> {
        let text = format!("{options:?}");
        let unreadable = || StorageError::Backend {
            operation: "read the commitlog options".to_owned(),
            detail: format!("cannot read {text}; use a directory name of printable characters"),
        };
        let rest = text
            .strip_prefix("LogOptions { log_dir: ")
            .ok_or_else(unreadable)?;
        let (dir, rest) = parse_debug_str(rest).ok_or_else(unreadable)?;
        let mut numbers = [0u64; 3];
        let mut rest = rest;
        for (slot, name) in numbers.iter_mut().zip([
            ", log_max_bytes: ",
            ", index_max_bytes: ",
            ", message_max_bytes: ",
        ]) {
            rest = rest.strip_prefix(name).ok_or_else(unreadable)?;
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            *slot = rest[..digits].parse().map_err(|_| unreadable())?;
            rest = &rest[digits..];
        }
        let [segment_max_bytes, index_max_bytes, message_max_bytes] = numbers;
        if rest != " }" || index_max_bytes % INDEX_ENTRY_BYTES != 0 {
            return Err(unreadable());
        }
        let mut rebuilt = LogOptions::new(&dir);
        rebuilt
            .segment_max_bytes(usize::try_from(segment_max_bytes).map_err(|_| unreadable())?)
            .index_max_items(
                usize::try_from(index_max_bytes / INDEX_ENTRY_BYTES).map_err(|_| unreadable())?,
            )
            .message_max_bytes(usize::try_from(message_max_bytes).map_err(|_| unreadable())?);
        if format!("{rebuilt:?}") != text {
            return Err(unreadable());
        }
        if index_max_bytes < 2 * INDEX_ENTRY_BYTES {
            // commitlog grows a full index by half its size, rounded down to
            // whole entries: an index of one entry never grows.
            return Err(StorageError::Backend {
                operation: "read the commitlog options".to_owned(),
                detail: "index_max_items must be at least 2".to_owned(),
            });
        }
        Ok(Self {
            options,
            dir: PathBuf::from(dir),
            segment_max_bytes,
            message_max_bytes,
            index_max_bytes,
        })
    }

    /// The most messages one `append` call may carry. commitlog grows a
    /// full index once per call, by half its size, and indexes every
    /// message; an index is never smaller than `index_max_bytes`, so a call
    /// with at most `index_max_bytes / 16` messages always fits.
    pub(crate) fn chunk_max_messages(&self) -> usize {
        usize::try_from(self.index_max_bytes / (2 * INDEX_ENTRY_BYTES))
            .unwrap_or(usize::MAX)
            .max(1)
    }

    /// The most bytes one chunk of messages may have: what fits both one
    /// `append` call and one fresh segment (after its magic).
    pub(crate) fn chunk_max_bytes(&self) -> u64 {
        self.message_max_bytes
            .min(self.segment_max_bytes.saturating_sub(MAGIC.len() as u64))
    }

    /// The segment file of the segment starting at `base`.
    pub(crate) fn segment_path(&self, base: u64) -> PathBuf {
        self.dir.join(format!("{base:020}.log"))
    }

    /// The index file of the segment starting at `base`.
    pub(crate) fn index_path(&self, base: u64) -> PathBuf {
        self.dir.join(format!("{base:020}.index"))
    }
}

/// Parses a string literal as `Debug` prints it, returning the string and
/// what follows the closing quote. Only the escapes `Debug` emits for
/// printable text are understood.
fn parse_debug_str(text: &str) -> Option<(String, &str)> {
    let mut chars = text.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 2..])),
            '\\' => match chars.next()?.1 {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '0' => out.push('\0'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// The files of one segment found in the directory.
#[derive(Debug, Default)]
struct SegmentFiles {
    /// The segment file, if present.
    log: Option<PathBuf>,
    /// The index file, if present.
    index: Option<PathBuf>,
}

/// Lists the segments in `layout.dir` by base offset. A missing directory is
/// an empty log.
fn list(layout: &Layout) -> StorageResult<BTreeMap<u64, SegmentFiles>> {
    let mut segments: BTreeMap<u64, SegmentFiles> = BTreeMap::new();
    let entries = match fs::read_dir(&layout.dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(segments),
        Err(e) => return Err(error::io("list the commitlog", &layout.dir, &e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| error::io("list the commitlog", &layout.dir, &e))?;
        let path = entry.path();
        let is_log = path.extension().is_some_and(|e| e == "log");
        let is_index = path.extension().is_some_and(|e| e == "index");
        if !is_log && !is_index {
            continue;
        }
        let base = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        let (Some(base), true) = (base, path.is_file()) else {
            return Err(error::corrupt(
                &path,
                "unexpected entry in the commitlog directory: segments and indexes are files \
                 named by a 20-digit offset",
            ));
        };
        let files = segments.entry(base).or_default();
        if is_log {
            files.log = Some(path);
        } else {
            files.index = Some(path);
        }
    }
    Ok(segments)
}

/// Whether the commit log directory holds any segment or index file.
pub(crate) fn has_segments(layout: &Layout) -> StorageResult<bool> {
    Ok(!list(layout)?.is_empty())
}

/// The segments that remain after [`prepare`], and where the committed
/// entries now start.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The base offsets of the remaining segments, ascending. Empty when the
    /// log holds no committed entry: `commitlog` then starts afresh at 0.
    pub(crate) bases: Vec<u64>,
    /// The commitlog offset of the first committed entry: the one asked
    /// for, or 0 when no entry is committed and every file was removed.
    pub(crate) first: u64,
    /// The files deleted, with their sizes and what they held.
    pub(crate) removed: Vec<(PathBuf, u64, Dropped)>,
    /// Where the files and tails moved to quarantine went.
    pub(crate) quarantined: Vec<PathBuf>,
}

/// What [`prepare`] does with the offsets past the committed end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Beyond {
    /// Nothing committed says what they are (a crash cut a write short, or
    /// the state store fell behind): move them to quarantine.
    Quarantine,
    /// A committed batch replaced them (its redo record holds the new
    /// entries): delete them.
    Remove,
}

/// What a file that [`prepare`] deleted held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// Only offsets below the committed start.
    Trimmed,
    /// Only offsets past the committed end, which a committed batch replaced.
    Replaced,
}

/// Deals with a file that holds only offsets past the committed end, as
/// `beyond` says.
fn discard(
    layout: &Layout,
    path: &Path,
    beyond: Beyond,
    removed: &mut Vec<(PathBuf, u64, Dropped)>,
    quarantined: &mut Vec<PathBuf>,
) -> StorageResult<()> {
    match beyond {
        Beyond::Quarantine => quarantined.push(quarantine(&layout.dir, path)?),
        Beyond::Remove => {
            let bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            remove(path)?;
            removed.push((path.to_path_buf(), bytes, Dropped::Replaced));
        }
    }
    Ok(())
}

/// Makes the commit log in `layout.dir` hold exactly the committed offsets
/// `first..first + count` at its end, as described in the module doc, and
/// reports what remains. Checks everything before changing anything.
/// `beyond` says whether what lies past the end is quarantined or deleted.
pub(crate) fn prepare(
    layout: &Layout,
    first: u64,
    count: u64,
    beyond: Beyond,
) -> StorageResult<Prepared> {
    let segments = list(layout)?;
    let mut quarantined = Vec::new();
    let mut removed = Vec::new();
    if count == 0 {
        // No entry is committed: every file holds only trimmed or
        // uncommitted entries, and the log may start over. Unless a
        // committed batch replaced them, they are moved aside, not deleted:
        // if the state store ever fell behind the log (see the crate docs),
        // these would be intact entries.
        for files in segments.values() {
            for path in [&files.log, &files.index].into_iter().flatten() {
                discard(layout, path, beyond, &mut removed, &mut quarantined)?;
            }
        }
        sync_dir(&layout.dir)?;
        return Ok(Prepared {
            bases: Vec::new(),
            first: 0,
            removed,
            quarantined,
        });
    }
    let end = first + count;
    let Some(&first_base) = segments.range(..=first).next_back().map(|(b, _)| b) else {
        return Err(error::corrupt(
            &layout.dir,
            format!(
                "no segment holds offset {first}, the first committed entry: a segment is missing"
            ),
        ));
    };
    let last_base = *segments
        .range(..end)
        .next_back()
        .map(|(b, _)| b)
        .expect("first_base is below `end`, so some base is");

    // Check every segment the committed range needs.
    let needed: Vec<u64> = segments
        .range(first_base..=last_base)
        .map(|(&b, _)| b)
        .collect();
    for (i, &base) in needed.iter().enumerate() {
        let files = &segments[&base];
        let (Some(log), Some(index)) = (&files.log, &files.index) else {
            let (present, missing) = match &files.log {
                Some(log) => (log.clone(), "index"),
                None => (layout.index_path(base), "segment"),
            };
            return Err(error::corrupt(
                &present,
                format!("the {missing} file beside it is missing, and it holds committed entries"),
            ));
        };
        check_magic(log)?;
        if let Some(&next) = needed.get(i + 1) {
            check_closed(log, index, base, next)?;
        }
    }
    let (log, index) = (
        segments[&last_base].log.clone().expect("checked above"),
        segments[&last_base].index.clone().expect("checked above"),
    );
    let cut = check_last(&log, &index, last_base, end - 1)?;

    // Everything checked: now mend.
    let keep_tail = beyond == Beyond::Quarantine;
    quarantined.extend(truncate_tail(
        &layout.dir,
        &log,
        &index,
        last_base,
        end,
        cut,
        keep_tail,
    )?);
    for (&base, files) in &segments {
        for path in [&files.log, &files.index].into_iter().flatten() {
            if base < first_base {
                // Below the committed start: trimmed in every state the
                // store could have, so gone for good.
                let bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                remove(path)?;
                removed.push((path.clone(), bytes, Dropped::Trimmed));
            } else if base > last_base {
                discard(layout, path, beyond, &mut removed, &mut quarantined)?;
            }
        }
    }
    sync_dir(&layout.dir)?;
    Ok(Prepared {
        bases: needed,
        first,
        removed,
        quarantined,
    })
}

/// Checks a segment's magic.
fn check_magic(log: &Path) -> StorageResult<()> {
    let file = File::open(log).map_err(|e| error::io("open a segment", log, &e))?;
    let mut magic = [0u8; 2];
    match file.read_exact_at(&mut magic, 0) {
        Ok(()) if magic == MAGIC => Ok(()),
        Ok(()) => Err(error::corrupt(
            log,
            "the segment does not start with commitlog's magic",
        )),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(error::corrupt(
            log,
            "the segment is truncated below its magic",
        )),
        Err(e) => Err(error::io("read a segment", log, &e)),
    }
}

/// Reads a whole index file, checking its size.
fn read_index(index: &Path) -> StorageResult<Vec<u8>> {
    let bytes = fs::read(index).map_err(|e| error::io("read an index", index, &e))?;
    if bytes.is_empty() || bytes.len() as u64 % INDEX_ENTRY_BYTES != 0 {
        return Err(error::corrupt(
            index,
            format!(
                "the index is {} bytes, not a positive multiple of 8",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// The entry at position `i` of an index: (relative offset, file position).
fn entry(index: &[u8], i: u64) -> Option<(u32, u32)> {
    let at = usize::try_from(i * INDEX_ENTRY_BYTES).ok()?;
    let bytes = index.get(at..at + 8)?;
    let rel = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let pos = u32::from_le_bytes(bytes[4..].try_into().expect("4 bytes"));
    Some((rel, pos))
}

/// The number of entries written to an index: entries are written in order
/// and an unwritten one is all zeros (a written one has a position of at
/// least 2, past the magic).
fn written_entries(index: &[u8]) -> u64 {
    let total = index.len() as u64 / INDEX_ENTRY_BYTES;
    let (mut lo, mut hi) = (0, total);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if entry(index, mid) == Some((0, 0)) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Reads the message at `pos` of a segment and checks that it is whole,
/// carries `offset` and matches its checksum; returns the position after it.
fn check_message(log: &Path, file: &File, pos: u64, offset: u64) -> StorageResult<u64> {
    let mut header = [0u8; HEADER_BYTES as usize];
    let truncated = |e: io::Error| {
        if e.kind() == ErrorKind::UnexpectedEof {
            error::corrupt(
                log,
                format!("the segment is truncated: the entry at offset {offset} is cut off"),
            )
        } else {
            error::io("read a segment", log, &e)
        }
    };
    file.read_exact_at(&mut header, pos).map_err(truncated)?;
    let found = u64::from_le_bytes(header[..8].try_into().expect("8 bytes"));
    let size = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let hash = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    if found != offset {
        return Err(error::corrupt(
            log,
            format!("the index places offset {offset} at byte {pos}, which holds offset {found}"),
        ));
    }
    let mut body = vec![0u8; size as usize];
    file.read_exact_at(&mut body, pos + HEADER_BYTES)
        .map_err(truncated)?;
    if crc32c::crc32c(&body) != hash {
        return Err(error::corrupt(
            log,
            format!("the entry at offset {offset} fails its checksum"),
        ));
    }
    Ok(pos + HEADER_BYTES + u64::from(size))
}

/// Checks a closed segment: its index ends right before `next`, the start of
/// the next segment, and its last message is whole and ends the file.
fn check_closed(log: &Path, index: &Path, base: u64, next: u64) -> StorageResult<()> {
    let bytes = read_index(index)?;
    let written = written_entries(&bytes);
    if base + written != next {
        return Err(error::corrupt(
            index,
            format!(
                "the segment ends at offset {} but the next segment starts at {next}: \
                 a segment is missing or truncated",
                base + written
            ),
        ));
    }
    let file = File::open(log).map_err(|e| error::io("open a segment", log, &e))?;
    let len = file
        .metadata()
        .map_err(|e| error::io("stat a segment", log, &e))?
        .len();
    let (_, pos) = entry(&bytes, written - 1).expect("written entries are in the index");
    // The last entry first: a segment cut short is reported as that.
    let end = check_message(log, &file, u64::from(pos), next - 1)?;
    check_positions(index, &bytes, written, len)?;
    if len != end {
        return Err(error::corrupt(
            log,
            format!("the closed segment is {len} bytes but its last entry ends at byte {end}"),
        ));
    }
    Ok(())
}

/// Checks that the last committed entry, `last`, is indexed and whole in the
/// segment starting at `base`; returns the position right after it.
fn check_last(log: &Path, index: &Path, base: u64, last: u64) -> StorageResult<u64> {
    let bytes = read_index(index)?;
    let rel = last - base;
    let pos = match entry(&bytes, rel) {
        Some((found, pos)) if u64::from(found) == rel && pos >= 2 => pos,
        _ => {
            return Err(error::corrupt(
                index,
                format!("offset {last}, the last committed entry, is not in the index"),
            ));
        }
    };
    let file = File::open(log).map_err(|e| error::io("open a segment", log, &e))?;
    let len = file
        .metadata()
        .map_err(|e| error::io("stat a segment", log, &e))?
        .len();
    // The last entry first: a segment cut short is reported as that.
    let end = check_message(log, &file, u64::from(pos), last)?;
    check_positions(index, &bytes, rel + 1, len)?;
    Ok(end)
}

/// Checks the first `count` entries of an index against a segment of `len`
/// bytes: entry `i` names relative offset `i`, and the positions rise from
/// past the magic and each leaves room for a message header in the file.
/// `commitlog` reads with these positions unchecked (a position past the
/// file's end or below the one before makes its arithmetic overflow), so
/// they are checked here, before it opens the log.
fn check_positions(index: &Path, bytes: &[u8], count: u64, len: u64) -> StorageResult<()> {
    let mut prev = None;
    for i in 0..count {
        let Some((rel, pos)) = entry(bytes, i) else {
            return Err(error::corrupt(
                index,
                format!("the index ends before its entry {i}"),
            ));
        };
        let pos = u64::from(pos);
        if u64::from(rel) != i {
            return Err(error::corrupt(
                index,
                format!("index entry {i} names relative offset {rel}"),
            ));
        }
        if pos < MAGIC.len() as u64 || prev.is_some_and(|p| pos <= p) || pos + HEADER_BYTES > len {
            return Err(error::corrupt(
                index,
                format!(
                    "index entry {i} places its entry at byte {pos}, which is not after the one \
                     before and within the {len}-byte segment"
                ),
            ));
        }
        prev = Some(pos);
    }
    Ok(())
}

/// Cuts the last segment after the committed entries (`..end`, whose bytes
/// end at `cut`), zeroes the index entries past them, and leaves at least one
/// zero entry so that `commitlog` reopens the index for writing. With
/// `keep_tail`, the cut-off bytes are first copied to quarantine, and where
/// they went is returned.
fn truncate_tail(
    dir: &Path,
    log: &Path,
    index: &Path,
    base: u64,
    end: u64,
    cut: u64,
    keep_tail: bool,
) -> StorageResult<Option<PathBuf>> {
    let file = OpenOptions::new()
        .write(true)
        .open(log)
        .map_err(|e| error::io("open a segment", log, &e))?;
    let len = file
        .metadata()
        .map_err(|e| error::io("stat a segment", log, &e))?
        .len();
    let mut moved = None;
    if len > cut {
        if keep_tail {
            moved = Some(quarantine_tail(dir, log, cut, len)?);
        }
        file.set_len(cut)
            .map_err(|e| error::io("cut the uncommitted tail of a segment", log, &e))?;
        file.sync_all()
            .map_err(|e| error::io("sync a segment", log, &e))?;
    }

    let bytes = read_index(index)?;
    let keep = (end - base) * INDEX_ENTRY_BYTES;
    let file = OpenOptions::new()
        .write(true)
        .open(index)
        .map_err(|e| error::io("open an index", index, &e))?;
    let mut changed = false;
    let stale = &bytes[usize::try_from(keep)
        .unwrap_or(bytes.len())
        .min(bytes.len())..];
    if stale.iter().any(|&b| b != 0) {
        file.write_all_at(&vec![0u8; stale.len()], keep)
            .map_err(|e| error::io("zero uncommitted index entries", index, &e))?;
        changed = true;
    }
    if (bytes.len() as u64) < keep + INDEX_ENTRY_BYTES {
        file.set_len(keep + INDEX_PAD_ENTRIES * INDEX_ENTRY_BYTES)
            .map_err(|e| error::io("extend a full index", index, &e))?;
        changed = true;
    }
    if changed {
        file.sync_all()
            .map_err(|e| error::io("sync an index", index, &e))?;
    }
    Ok(moved)
}

/// Makes sure the index of the active segment at `base` ends in a zero
/// entry, so that reopening the log does not mistake it for a closed one.
pub(crate) fn pad_active_index(layout: &Layout, base: u64) -> StorageResult<()> {
    let path = layout.index_path(base);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| error::io("open an index", &path, &e))?;
    let len = file
        .metadata()
        .map_err(|e| error::io("stat an index", &path, &e))?
        .len();
    let mut last = [0u8; 8];
    if len >= INDEX_ENTRY_BYTES {
        file.read_exact_at(&mut last, len - INDEX_ENTRY_BYTES)
            .map_err(|e| error::io("read an index", &path, &e))?;
    }
    if len < INDEX_ENTRY_BYTES || last != [0u8; 8] {
        file.set_len(len + INDEX_PAD_ENTRIES * INDEX_ENTRY_BYTES)
            .map_err(|e| error::io("extend a full index", &path, &e))?;
        file.sync_all()
            .map_err(|e| error::io("sync an index", &path, &e))?;
    }
    Ok(())
}

/// Removes the segment and index of the segment at `base`; a file already
/// gone is fine.
pub(crate) fn remove_segment(layout: &Layout, base: u64) -> StorageResult<()> {
    remove(&layout.segment_path(base))?;
    remove(&layout.index_path(base))
}

/// The directory, inside the commit log directory, where open moves what
/// lies past the commit point instead of deleting it.
pub(crate) const QUARANTINE_DIR: &str = "quarantine";

/// Moves `path` into the quarantine directory under a name not yet taken
/// there (the file name, then `name.1`, `name.2`, ...), and returns where.
fn quarantine(dir: &Path, path: &Path) -> StorageResult<PathBuf> {
    let target = quarantine_target(dir, path, "")?;
    fs::rename(path, &target)
        .map_err(|e| error::io("move a segment file to quarantine", path, &e))?;
    sync_dir(&target.parent().map(Path::to_path_buf).unwrap_or_default())?;
    Ok(target)
}

/// Copies the bytes `from..to` of the segment `log` into a new file in the
/// quarantine directory, durably, before the caller cuts them off; returns
/// the new file.
fn quarantine_tail(dir: &Path, log: &Path, from: u64, to: u64) -> StorageResult<PathBuf> {
    let file = File::open(log).map_err(|e| error::io("open a segment", log, &e))?;
    let len = usize::try_from(to - from)
        .map_err(|_| error::corrupt(log, "the uncommitted tail is too large to move"))?;
    let mut tail = vec![0u8; len];
    file.read_exact_at(&mut tail, from)
        .map_err(|e| error::io("read the uncommitted tail of a segment", log, &e))?;
    let target = quarantine_target(dir, log, ".tail")?;
    let mut out =
        File::create(&target).map_err(|e| error::io("create a quarantine file", &target, &e))?;
    out.write_all(&tail)
        .and_then(|()| out.sync_all())
        .map_err(|e| error::io("write a quarantine file", &target, &e))?;
    sync_dir(&target.parent().map(Path::to_path_buf).unwrap_or_default())?;
    Ok(target)
}

fn quarantine_target(dir: &Path, path: &Path, suffix: &str) -> StorageResult<PathBuf> {
    let q = dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&q).map_err(|e| error::io("create the quarantine directory", &q, &e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| error::corrupt(path, "a segment file name that is not UTF-8"))?;
    let mut target = q.join(format!("{name}{suffix}"));
    let mut n = 1;
    while target.exists() {
        target = q.join(format!("{name}{suffix}.{n}"));
        n += 1;
    }
    Ok(target)
}

fn remove(path: &Path) -> StorageResult<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(error::io("remove a segment file", path, &e)),
    }
}

/// Syncs a directory, so that files created, renamed or removed in it stay so.
pub(crate) fn sync_dir(dir: &Path) -> StorageResult<()> {
    match File::open(dir) {
        Ok(d) => d
            .sync_all()
            .map_err(|e| error::io("sync a directory", dir, &e)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(error::io("open a directory", dir, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_read_back_from_their_debug_output() {
        let mut options = LogOptions::new("/tmp/some \"odd\" dir\\x");
        options
            .segment_max_bytes(4096)
            .index_max_items(10)
            .message_max_bytes(1000);
        let layout = Layout::from_options(options).unwrap();
        assert_eq!(layout.dir, PathBuf::from("/tmp/some \"odd\" dir\\x"));
        assert_eq!(layout.segment_max_bytes, 4096);
        assert_eq!(layout.message_max_bytes, 1000);
        assert_eq!(layout.chunk_max_bytes(), 1000);
    }

    #[test]
    fn default_options_are_read_back() {
        let layout = Layout::from_options(LogOptions::new("log")).unwrap();
        assert_eq!(layout.dir, PathBuf::from("log"));
        assert_eq!(layout.segment_max_bytes, 1_000_000_000);
        assert_eq!(layout.message_max_bytes, 1_000_000);
    }

    #[test]
    fn written_entries_counts_up_to_the_first_zero_entry() {
        let mut index = vec![0u8; 64];
        assert_eq!(written_entries(&index), 0);
        index[4] = 2;
        index[8] = 1;
        index[12] = 30;
        assert_eq!(written_entries(&index), 2);
        let full: Vec<u8> = (0..16).map(|i| i as u8 + 1).collect();
        assert_eq!(written_entries(&full), 2);
    }
}
