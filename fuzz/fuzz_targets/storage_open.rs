//! A `PersistentStorage` directory with one file damaged by the input
//! (truncated, overwritten in part, replaced, appended to or removed; see
//! `omnipaxos_fuzz::parse_damage`), then `PersistentStorage::open` and a
//! read of everything it holds. Each must be Ok or a `StorageError`, never
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use omnipaxos::storage::Storage;
use omnipaxos_fuzz::{
    Damage, Entry,
    storage::{files, open, template},
};
use std::{fs, io::Write, os::unix::fs::FileExt};

fuzz_target!(|data: &[u8]| {
    let Some((pick, damage)) = omnipaxos_fuzz::parse_damage(data) else {
        return;
    };
    let template = template();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let copied = files(template.path());
    for rel in &copied {
        let to = dir.path().join(rel);
        fs::create_dir_all(to.parent().expect("a file is in a directory")).expect("mkdir");
        fs::copy(template.path().join(rel), &to).expect("copy");
    }
    let target = dir.path().join(&copied[usize::from(pick) % copied.len()]);
    let len = fs::metadata(&target).expect("stat").len();
    match damage {
        Damage::Truncate(n) => {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .expect("open");
            file.set_len(u64::from(n) % (len + 1)).expect("truncate");
        }
        Damage::Overwrite(at, bytes) => {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .expect("open");
            file.write_all_at(bytes, u64::from(at) % len.max(1))
                .expect("write");
        }
        Damage::Replace(bytes) => fs::write(&target, bytes).expect("write"),
        Damage::Append(bytes) => {
            let mut file = fs::OpenOptions::new()
                .append(true)
                .open(&target)
                .expect("open");
            file.write_all(bytes).expect("append");
        }
        Damage::Remove => fs::remove_file(&target).expect("remove"),
    }
    if let Ok(s) = open(dir.path()) {
        let _ = s.get_promise();
        let _ = s.get_accepted_round();
        let _ = s.get_decided_idx();
        let _ = s.get_compacted_idx();
        let _ = s.get_stopsign();
        let _ = s.get_snapshot();
        let _ = s.get_previous_configuration_end();
        if let Ok(len) = s.get_log_len() {
            let _: Result<Vec<Entry>, _> = s.get_suffix(0);
            let _ = s.get_entries(0, len);
        }
    }
});
