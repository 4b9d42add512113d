//! The user guide's Rust blocks as doctests: one item per chapter of
//! `book/src`, so `cargo test -p book --doc` compiles every block and runs
//! every one not marked `no_run`. The crate has no code of its own.
//!
//! A new chapter is listed in `book/src/SUMMARY.md` and here
//! (`.ci/check_book_links.py` fails if the two disagree). `mdbook test`
//! cannot find the workspace crates the examples use; this crate is how they
//! are tested.

/// Declares one empty module per chapter whose doc is the chapter's text.
macro_rules! chapters {
    ($($name:ident => $file:literal,)*) => {
        $(
            #[doc = include_str!(concat!("../../src/", $file))]
            pub mod $name {}
        )*
    };
}

chapters! {
    introduction => "introduction.md",
    getting_started => "getting_started.md",
    omnipaxos => "omnipaxos.md",
    communication => "communication.md",
    reading_writing => "reading_writing.md",
    leader_election => "leader_election.md",
    storage => "storage.md",
    compaction => "compaction.md",
    reconfiguration => "reconfiguration.md",
    linearizable_reads => "linearizable_reads.md",
    flexible_quorums => "flexible_quorums.md",
    runtime => "runtime.md",
    networking => "networking.md",
    dashboard => "dashboard.md",
    metrics => "metrics.md",
    testing => "testing.md",
    performance => "performance.md",
    kv_store => "kv_store.md",
    faq => "faq.md",
    migration => "migration.md",
}
