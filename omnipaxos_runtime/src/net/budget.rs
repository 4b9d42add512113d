//! A memory budget for decoding: what one frame may make the receiver hold.
//!
//! bincode's size limit counts the bytes a decode *reads*, not the memory it
//! builds. A varint `u64` is one byte on the wire and eight in a `Vec<u64>`;
//! an entry of a few wire bytes can be a hundred in memory. So a frame of
//! 64 MiB of one-byte node ids used to become a 512 MiB `Vec` (643 MiB at the
//! peak, while the vector grew) before anything could look at the message.
//!
//! [`Budgeted`] wraps a `serde::Deserializer` (and with it every visitor,
//! sequence, map and enum access it hands out, as `serde_ignored` does) and
//! passes every call through, but first charges a [`Budget`]:
//!
//! - a sequence or map of `n` elements (`deserialize_seq`, `deserialize_map`)
//!   is charged `n` times the in-memory size of its element type
//!   (`size_of::<T>()`, at least one byte), all at once when its first
//!   element is asked for, so a length prefix that claims too much is refused
//!   before the collection grows. Before that first element serde may have
//!   preallocated from the length prefix, at most 1 MiB per collection (and
//!   nothing for a prefix claiming more elements than the budget has bytes
//!   left, which is given no size hint). The count is the format's: bincode
//!   reads exactly as many elements as the prefix says;
//! - a string or byte buffer is charged its length before it is copied.
//!
//! Inline values (struct and tuple fields, enum payloads, an `Option`'s
//! content) are not charged on their own: they live inside the value that
//! holds them, whose `size_of` was charged as an element of its collection
//! or, for the decoded message itself, by [`Charged`]. Once a charge would
//! take the total past the budget, the decode fails, and [`Budget::refused`]
//! tells the caller why.
//!
//! What is charged is the values' logical size. The allocator may hand out
//! more: a `Vec` grows by doubling, so its capacity can reach twice its
//! length, and a hash map keeps spare buckets. Memory that a type's own
//! `Deserialize` allocates outside serde's collections and strings (the
//! target of a `Box` or an `Arc`) is invisible to serde and not charged.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use std::{cell::Cell, fmt, marker::PhantomData, mem::size_of};

/// The bytes one decode may still charge; shared by every wrapper of that
/// decode through a shared reference, hence the cells.
#[derive(Debug)]
pub(super) struct Budget {
    limit: usize,
    used: Cell<usize>,
    /// The total a refused charge would have reached, once one was refused.
    refused: Cell<Option<usize>>,
}

impl Budget {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: Cell::new(0),
            refused: Cell::new(None),
        }
    }

    /// The bytes charged so far: after a successful decode, what the decoded
    /// value holds by this module's accounting.
    pub(super) fn used(&self) -> usize {
        self.used.get()
    }

    /// If a charge was refused, the total it would have brought the decode
    /// to; the decode failed because of it.
    pub(super) fn refused(&self) -> Option<usize> {
        self.refused.get()
    }

    fn left(&self) -> usize {
        self.limit - self.used.get()
    }

    /// Charges `bytes`, or fails the decode if they do not fit. The error is
    /// the deserializer's own type, so it can travel up through serde; the
    /// caller tells it from a malformed body by [`refused`](Self::refused).
    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let total = self.used.get().saturating_add(bytes);
        if total > self.limit {
            self.refused.set(Some(total));
            return Err(E::custom(format_args!(
                "the value needs more than the {} bytes of memory its frame may use",
                self.limit
            )));
        }
        self.used.set(total);
        Ok(())
    }
}

/// Decodes an `M` through [`Budgeted`], charging `size_of::<M>()` for the
/// value itself first. Pass it to a format's `deserialize_seed`.
pub(super) struct Charged<'b, M> {
    budget: &'b Budget,
    _value: PhantomData<fn() -> M>,
}

impl<'b, M> Charged<'b, M> {
    pub(super) fn new(budget: &'b Budget) -> Self {
        Self {
            budget,
            _value: PhantomData,
        }
    }
}

impl<'de, M: de::Deserialize<'de>> DeserializeSeed<'de> for Charged<'_, M> {
    type Value = M;

    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<M, D::Error> {
        self.budget.charge(size_of::<M>())?;
        M::deserialize(Budgeted {
            inner,
            budget: self.budget,
        })
    }
}

/// A deserializer that charges [`Budget`] for what it builds; see the
/// [module docs](self).
pub(super) struct Budgeted<'b, D> {
    inner: D,
    budget: &'b Budget,
}

/// Whether the sequences and maps a visitor is handed are collections (whose
/// elements are charged) or the fields of a struct, tuple or enum variant
/// (which live inline in a value that was charged already).
#[derive(Clone, Copy)]
enum Shape {
    Collection,
    Inline,
}

/// Wraps the visitor of a `deserialize_*` call.
struct Visit<'b, V> {
    inner: V,
    budget: &'b Budget,
    shape: Shape,
}

/// Wraps the seed of an element, key, value or newtype payload, so that the
/// value it builds is decoded through [`Budgeted`] too.
struct Seed<'b, S> {
    inner: S,
    budget: &'b Budget,
}

/// Elements of one collection paid for in advance: how many, and the size
/// each was charged.
#[derive(Clone, Copy, Default)]
struct Prepaid {
    count: usize,
    size: usize,
}

impl Prepaid {
    /// Pays for one element of `size` bytes: from what was paid in advance if
    /// it covers the element; else, the first time, for all `hint` elements
    /// the collection announces; else for this one alone.
    fn pay<E: de::Error>(
        &mut self,
        budget: &Budget,
        size: usize,
        hint: Option<usize>,
        first: bool,
    ) -> Result<(), E> {
        // A zero-sized element costs no memory, but decoding one still costs
        // time: charging a byte bounds how many a frame may claim.
        let size = size.max(1);
        if hint == Some(0) {
            // The format knows the collection is done: this call ends it and
            // builds nothing. (bincode reports exactly what is left.)
            return Ok(());
        }
        if self.count > 0 && size <= self.size {
            self.count -= 1;
            return Ok(());
        }
        match hint {
            Some(n) if first => {
                budget.charge(n.saturating_mul(size))?;
                *self = Self { count: n - 1, size };
                Ok(())
            }
            _ => budget.charge(size),
        }
    }
}

/// Wraps the elements of a sequence.
struct Seq<'b, A> {
    inner: A,
    budget: &'b Budget,
    shape: Shape,
    started: bool,
    prepaid: Prepaid,
}

/// Wraps the entries of a map; keys and values are paid for separately, as
/// serde asks for them separately.
struct Map<'b, A> {
    inner: A,
    budget: &'b Budget,
    shape: Shape,
    keys_started: bool,
    values_started: bool,
    keys: Prepaid,
    values: Prepaid,
}

struct Enum<'b, A> {
    inner: A,
    budget: &'b Budget,
}

struct Variant<'b, A> {
    inner: A,
    budget: &'b Budget,
}

impl<'b, D> Budgeted<'b, D> {
    fn visit<V>(&self, inner: V, shape: Shape) -> Visit<'b, V> {
        Visit {
            inner,
            budget: self.budget,
            shape,
        }
    }
}

/// Forwards `deserialize_*` methods whose visitor sees inline values only.
macro_rules! forward_inline {
    ($($method:ident $(($($arg:ident: $ty:ty),*))?),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, $($($arg: $ty,)*)? visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.visit(visitor, Shape::Inline);
            self.inner.$method($($($arg,)*)? visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Budgeted<'_, D> {
    type Error = D::Error;

    forward_inline! {
        deserialize_bool, deserialize_i8, deserialize_i16, deserialize_i32, deserialize_i64,
        deserialize_i128, deserialize_u8, deserialize_u16, deserialize_u32, deserialize_u64,
        deserialize_u128, deserialize_f32, deserialize_f64, deserialize_char,
        deserialize_option, deserialize_unit, deserialize_identifier, deserialize_ignored_any,
        deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // Only a self-describing format gets here, and the sequences and maps
        // it reveals are collections.
        let visitor = self.visit(visitor, Shape::Collection);
        self.inner.deserialize_any(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visit(visitor, Shape::Collection);
        self.inner.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visit(visitor, Shape::Collection);
        self.inner.deserialize_map(visitor)
    }

    // An owned string or buffer is asked for as a borrowed one: decoding from
    // a slice, bincode then hands out a view of the frame, which the visitor
    // copies only after `Visit` has charged its length. Asked for an owned
    // one, bincode would allocate the copy before anyone could charge it.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visit(visitor, Shape::Inline);
        self.inner.deserialize_str(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visit(visitor, Shape::Inline);
        self.inner.deserialize_bytes(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_bytes(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Budgeted {
            inner,
            budget: self.budget,
        })
    }
}

/// Forwards `visit_*` methods of values that hold no memory of their own.
macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool), visit_i8(i8), visit_i16(i16), visit_i32(i32), visit_i64(i64),
        visit_i128(i128), visit_u8(u8), visit_u16(u16), visit_u32(u32), visit_u64(u64),
        visit_u128(u128), visit_f32(f32), visit_f64(f64), visit_char(char),
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.budget.charge(v.len())?;
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.budget.charge(v.len())?;
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.budget.charge(v.len())?;
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.budget.charge(v.len())?;
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.budget.charge(v.len())?;
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.budget.charge(v.len())?;
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Budgeted {
            inner,
            budget: self.budget,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Budgeted {
            inner,
            budget: self.budget,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Seq {
            inner,
            budget: self.budget,
            shape: self.shape,
            started: false,
            prepaid: Prepaid::default(),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Map {
            inner,
            budget: self.budget,
            shape: self.shape,
            keys_started: false,
            values_started: false,
            keys: Prepaid::default(),
            values: Prepaid::default(),
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Enum {
            inner,
            budget: self.budget,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        if let Shape::Collection = self.shape {
            let first = !self.started;
            self.started = true;
            let hint = self.inner.size_hint();
            self.prepaid
                .pay(self.budget, size_of::<S::Value>(), hint, first)?;
        }
        self.inner.next_element_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        let hint = self.inner.size_hint();
        match self.shape {
            // serde preallocates a collection from this hint before asking for
            // its first element. A collection that claims more elements than
            // bytes are left will be refused at that element, so it gets no
            // hint and nothing is allocated for it.
            Shape::Collection => hint.filter(|&n| n <= self.budget.left()),
            Shape::Inline => hint,
        }
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Shape::Collection = self.shape {
            let first = !self.keys_started;
            self.keys_started = true;
            let hint = self.inner.size_hint();
            self.keys
                .pay(self.budget, size_of::<K::Value>(), hint, first)?;
        }
        self.inner.next_key_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        if let Shape::Collection = self.shape {
            let first = !self.values_started;
            self.values_started = true;
            // The key of this entry was taken already: the entries left are
            // the hint plus this one.
            let hint = self.inner.size_hint().map(|n| n.saturating_add(1));
            self.values
                .pay(self.budget, size_of::<S::Value>(), hint, first)?;
        }
        self.inner.next_value_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        let hint = self.inner.size_hint();
        match self.shape {
            Shape::Collection => hint.filter(|&n| n <= self.budget.left()),
            Shape::Inline => hint,
        }
    }
}

impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'b, A> {
    type Error = A::Error;
    type Variant = Variant<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        // The seed decodes the variant's name or index, which holds nothing.
        let (value, inner) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Variant {
                inner,
                budget: self.budget,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = Visit {
            inner: visitor,
            budget: self.budget,
            shape: Shape::Inline,
        };
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = Visit {
            inner: visitor,
            budget: self.budget,
            shape: Shape::Inline,
        };
        self.inner.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bincode::Options;
    use serde::{Deserialize, Serialize, de::DeserializeOwned};
    use std::collections::BTreeMap;

    fn codec() -> impl Options {
        bincode::DefaultOptions::new()
    }

    /// Decodes `bytes` as an `M` with `limit`: the value and what it was
    /// charged, or the total a refused charge would have reached.
    fn decode<M: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<(M, usize), usize> {
        let budget = Budget::new(limit);
        match codec().deserialize_seed(Charged::<M>::new(&budget), bytes) {
            Ok(m) => Ok((m, budget.used())),
            Err(e) => Err(budget
                .refused()
                .unwrap_or_else(|| panic!("failed without a refused charge: {e}"))),
        }
    }

    fn encode<M: Serialize>(m: &M) -> Vec<u8> {
        codec().serialize(m).unwrap()
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Entry {
        id: u64,
        key: String,
        tags: Vec<u16>,
        op: Op,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Op {
        Delete,
        Put(Vec<u8>),
        Cas { expected: Option<String>, new: u32 },
    }

    #[test]
    fn a_sequence_is_charged_its_length_times_its_element_size() {
        let v: Vec<u64> = (0..1000).collect();
        let (got, charged) = decode::<Vec<u64>>(&encode(&v), 1 << 20).unwrap();
        assert_eq!(got, v);
        assert_eq!(charged, size_of::<Vec<u64>>() + 1000 * size_of::<u64>());
    }

    #[test]
    fn fields_are_charged_with_their_value_and_collections_inside_them_on_their_own() {
        let entries = vec![
            Entry {
                id: 1,
                key: "alpha".into(),
                tags: vec![1, 2, 3],
                op: Op::Put(vec![9; 10]),
            },
            Entry {
                id: 2,
                key: String::new(),
                tags: vec![],
                op: Op::Cas {
                    expected: Some("old".into()),
                    new: 7,
                },
            },
            Entry {
                id: 3,
                key: "k".into(),
                tags: vec![4],
                op: Op::Delete,
            },
        ];
        let (got, charged) = decode::<Vec<Entry>>(&encode(&entries), 1 << 20).unwrap();
        assert_eq!(got, entries);
        let heap = 3 * size_of::<Entry>()
            + ("alpha".len() + 3 * size_of::<u16>() + 10)
            + "old".len()
            + ("k".len() + size_of::<u16>());
        assert_eq!(charged, size_of::<Vec<Entry>>() + heap);
    }

    #[test]
    fn a_map_is_charged_its_keys_and_values() {
        let m: BTreeMap<u32, String> = [(1, "a".to_string()), (2, "bcd".to_string())].into();
        let (got, charged) = decode::<BTreeMap<u32, String>>(&encode(&m), 1 << 20).unwrap();
        assert_eq!(got, m);
        let expected =
            size_of::<BTreeMap<u32, String>>() + 2 * (size_of::<u32>() + size_of::<String>()) + 4;
        assert_eq!(charged, expected);
    }

    #[test]
    fn a_value_that_fits_its_budget_exactly_decodes() {
        let v = vec![7u8; 100];
        let exact = size_of::<Vec<u8>>() + 100;
        assert!(decode::<Vec<u8>>(&encode(&v), exact).is_ok());
        assert_eq!(decode::<Vec<u8>>(&encode(&v), exact - 1), Err(exact));
    }

    #[test]
    fn a_length_prefix_claiming_more_than_the_budget_is_refused_before_any_element() {
        // 2^32 - 1 elements announced, one byte of them present: refused for
        // the claim, not for the missing bytes.
        let mut bytes = vec![0xfc];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.push(1);
        let needed = decode::<Vec<u64>>(&bytes, 1 << 20).unwrap_err();
        assert_eq!(
            needed,
            size_of::<Vec<u64>>() + u32::MAX as usize * size_of::<u64>()
        );
    }

    #[test]
    fn zero_sized_elements_cost_a_byte_each_so_a_frame_cannot_claim_unboundedly_many() {
        let mut bytes = vec![0xfd];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        let needed = decode::<Vec<()>>(&bytes, 1 << 20).unwrap_err();
        assert_eq!(needed, size_of::<Vec<()>>() + (1 << 60));
    }

    #[test]
    fn a_long_string_is_refused_before_it_is_copied() {
        let s = "x".repeat(1000);
        let needed = decode::<String>(&encode(&s), 500).unwrap_err();
        assert_eq!(needed, size_of::<String>() + 1000);
    }

    #[test]
    fn nested_collections_each_pay_for_their_own_elements() {
        let v = vec![vec![1u32; 10], vec![], vec![2; 5]];
        let (got, charged) = decode::<Vec<Vec<u32>>>(&encode(&v), 1 << 20).unwrap();
        assert_eq!(got, v);
        assert_eq!(
            charged,
            4 * size_of::<Vec<u32>>() + 15 * size_of::<u32>(),
            "the outer vector, its three elements, and their fifteen"
        );
    }
}
