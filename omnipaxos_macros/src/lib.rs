//! Derive macros for [`omnipaxos`](https://docs.rs/omnipaxos).
//!
//! The only macro is [`macro@Entry`], which makes a type usable as the element
//! of an OmniPaxos replicated log. Do not depend on this crate directly: turn
//! on the `macros` feature of `omnipaxos` and import the derive from there,
//! so that the two crates can never drift apart in version.
//!
//! ```toml
//! [dependencies]
//! omnipaxos = { version = "0.1", features = ["macros"] }
//! ```
//!
//! The generated code names `::omnipaxos::storage::...`, so the crate that
//! uses the derive must have `omnipaxos` among its dependencies under that
//! name.
#![deny(missing_docs)]

use proc_macro::TokenStream;

mod entry;

/// Implements `omnipaxos::storage::Entry` for a struct, enum or union.
///
/// `Entry` requires `Clone` and `Debug`, so derive those too. By default the
/// entry has no snapshot type (`type Snapshot = omnipaxos::storage::NoSnapshot`),
/// which makes compaction a plain trim of the log:
///
/// ```
/// use omnipaxos::macros::Entry;
///
/// #[derive(Clone, Debug, Entry)]
/// pub struct KeyValue {
///     pub key: String,
///     pub value: u64,
/// }
/// ```
///
/// To compact the log into snapshots, implement `omnipaxos::storage::Snapshot`
/// for a type of your own and name it with `#[snapshot(...)]` on the type that
/// derives `Entry`:
///
/// ```
/// use omnipaxos::{macros::Entry, storage::Snapshot};
/// use std::collections::HashMap;
///
/// #[derive(Clone, Debug, Entry)]
/// #[snapshot(KVSnapshot)]
/// pub struct KeyValue {
///     pub key: String,
///     pub value: u64,
/// }
///
/// /// The latest value of every key, standing in for the entries it replaces.
/// #[derive(Clone, Debug, Default)]
/// pub struct KVSnapshot {
///     pub latest: HashMap<String, u64>,
/// }
///
/// impl Snapshot<KeyValue> for KVSnapshot {
///     fn create(entries: &[KeyValue]) -> Self {
///         let latest = entries.iter().map(|kv| (kv.key.clone(), kv.value)).collect();
///         Self { latest }
///     }
///
///     fn merge(&mut self, delta: Self) {
///         self.latest.extend(delta.latest);
///     }
///
///     fn use_snapshots() -> bool {
///         true
///     }
/// }
/// ```
///
/// # Generic types
///
/// Type, lifetime and const parameters and the `where` clause are kept as
/// written. For a generic type the impl is bounded by `Self: Clone + Debug`,
/// so it exists exactly where your `Clone` and `Debug` impls do. When the
/// snapshot type names a type or const parameter of the entry (or `Self`), as
/// in `#[snapshot(Sum<T>)]`, the impl is also bounded by
/// `Sum<T>: Snapshot<Self>`, so your `Snapshot` impl may put bounds on `T`.
/// A snapshot type that names none of them gets no such bound: it should
/// implement `Snapshot` for the entry type under no bounds beyond `Entry`
/// itself, as `NoSnapshot` does. If neither shape fits, implement `Entry` by
/// hand; it is one associated type.
///
/// ```
/// use omnipaxos::macros::Entry;
///
/// #[derive(Clone, Debug, Entry)]
/// pub struct Tagged<T> {
///     pub tag: u32,
///     pub payload: T,
/// }
/// ```
///
/// # Unions
///
/// Unions are accepted: `Entry` has no methods, so the derive never reads the
/// fields. A union still needs hand-written `Clone` and `Debug` impls.
///
/// # Errors
///
/// The attribute must be written exactly as `#[snapshot(Type)]`, once, on the
/// type itself. These are compile errors pointing at the mistake:
/// `#[snapshot]` with no type, `#[snapshot()]`, `#[snapshot(A, B)]`,
/// `#[snapshot = "A"]`, an argument that is not a type (`#[snapshot(1)]`,
/// `#[snapshot(_)]`), the attribute given twice, and the attribute on a field
/// or an enum variant.
#[proc_macro_derive(Entry, attributes(snapshot))]
pub fn derive_entry(input: TokenStream) -> TokenStream {
    entry::derive(input.into()).into()
}
