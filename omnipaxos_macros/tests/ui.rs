//! Pins what `#[derive(Entry)]` accepts (`tests/pass`) and the exact compile
//! errors it gives for misuse (`tests/fail/*.stderr`).
//!
//! After an intended change to an error message, regenerate the expectations
//! with `TRYBUILD=overwrite cargo test -p omnipaxos_macros --test ui` and
//! review the diff of the `.stderr` files.

#[test]
fn derive_entry_ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/pass/*.rs");
    cases.compile_fail("tests/fail/*.rs");
}
