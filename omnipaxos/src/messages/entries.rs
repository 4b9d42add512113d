//! [`Entries`]: the entries a message carries, owned or shared.

use std::{fmt, ops::Deref, sync::Arc};

/// The entries of an [`AcceptDecide`](super::AcceptDecide): a list of `T`
/// that reads as a slice.
///
/// A leader that replicates a batch to several followers does not copy it
/// once per follower: every follower's message holds a range of one shared
/// buffer until the message is serialised, or until the follower takes the
/// entries with [`Entries::into_vec`] (which copies only while another
/// message still shares the buffer). On the wire, with the `serde` feature,
/// it is a plain sequence, the same bytes as a `Vec<T>`.
///
/// Build one from a `Vec<T>` (`Entries::from(vec![..])` or `vec.into()`).
pub struct Entries<T>(Repr<T>);

enum Repr<T> {
    Owned(Vec<T>),
    /// `buf[start..end]`, shared with other messages.
    Shared {
        buf: Arc<Vec<T>>,
        start: usize,
        end: usize,
    },
}

impl<T> Entries<T> {
    /// No entries.
    pub const fn new() -> Self {
        Self(Repr::Owned(Vec::new()))
    }

    /// `buf[start..end]`, sharing `buf`.
    ///
    /// Clamps the range to `buf`, so a wrong range gives fewer entries, never
    /// a panic (it would mean a bug; debug builds assert).
    pub(crate) fn shared(buf: Arc<Vec<T>>, start: usize, end: usize) -> Self {
        debug_assert!(
            start <= end && end <= buf.len(),
            "range {start}..{end} of {}",
            buf.len()
        );
        let end = end.min(buf.len());
        let start = start.min(end);
        Self(Repr::Shared { buf, start, end })
    }

    /// The entries as a slice.
    pub fn as_slice(&self) -> &[T] {
        match &self.0 {
            Repr::Owned(v) => v,
            Repr::Shared { buf, start, end } => &buf[*start..*end],
        }
    }

    /// Whether the entries share their buffer with another message (so that
    /// [`Entries::into_vec`] copies them).
    pub fn is_shared(&self) -> bool {
        match &self.0 {
            Repr::Owned(_) => false,
            Repr::Shared { buf, .. } => Arc::strong_count(buf) > 1,
        }
    }
}

impl<T: Clone> Entries<T> {
    /// The entries as a `Vec`, without a copy when nothing else shares them.
    pub fn into_vec(self) -> Vec<T> {
        match self.0 {
            Repr::Owned(v) => v,
            Repr::Shared { buf, start, end } => match Arc::try_unwrap(buf) {
                Ok(mut v) => {
                    v.truncate(end);
                    v.drain(..start);
                    v
                }
                Err(buf) => buf[start..end].to_vec(),
            },
        }
    }

    /// The entries as a `Vec` to change in place, copied first if shared.
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let Repr::Shared { .. } = self.0 {
            let owned = std::mem::take(self).into_vec();
            self.0 = Repr::Owned(owned);
        }
        match &mut self.0 {
            Repr::Owned(v) => v,
            Repr::Shared { .. } => unreachable!("made owned above"),
        }
    }
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> From<Vec<T>> for Entries<T> {
    fn from(v: Vec<T>) -> Self {
        Self(Repr::Owned(v))
    }
}

impl<T> FromIterator<T> for Entries<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self(Repr::Owned(iter.into_iter().collect()))
    }
}

impl<T> Deref for Entries<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<'a, T> IntoIterator for &'a Entries<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<T: Clone> IntoIterator for Entries<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

/// Cheap: a shared buffer is shared once more, not copied.
impl<T: Clone> Clone for Entries<T> {
    fn clone(&self) -> Self {
        match &self.0 {
            Repr::Owned(v) => Self(Repr::Owned(v.clone())),
            Repr::Shared { buf, start, end } => Self(Repr::Shared {
                buf: Arc::clone(buf),
                start: *start,
                end: *end,
            }),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Entries<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T: PartialEq> PartialEq for Entries<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Eq> Eq for Entries<T> {}

impl<T: PartialEq> PartialEq<Vec<T>> for Entries<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

#[cfg(feature = "serde")]
impl<T: serde::Serialize> serde::Serialize for Entries<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.as_slice())
    }
}

#[cfg(feature = "serde")]
impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Entries<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_range_reads_as_its_slice_and_copies_only_while_shared() {
        let buf = Arc::new(vec![1, 2, 3, 4]);
        let a = Entries::shared(Arc::clone(&buf), 0, 4);
        let b = Entries::shared(Arc::clone(&buf), 1, 3);
        drop(buf);
        assert_eq!(&*b, &[2, 3]);
        assert!(a.is_shared());
        assert_eq!(
            b.into_vec(),
            vec![2, 3],
            "copied: `a` still shares the buffer"
        );
        assert!(!a.is_shared());
        let ptr = a.as_ptr();
        let v = a.into_vec();
        assert_eq!(v, vec![1, 2, 3, 4]);
        assert_eq!(v.as_ptr(), ptr, "the last holder takes the buffer itself");
    }

    #[test]
    fn a_last_holder_of_a_middle_range_gets_only_that_range() {
        let e = Entries::shared(Arc::new(vec![1, 2, 3, 4, 5]), 1, 4);
        assert_eq!(e.into_vec(), vec![2, 3, 4]);
    }

    #[test]
    fn to_mut_unshares_and_equality_is_by_content() {
        let buf = Arc::new(vec![1, 2, 3]);
        let mut a = Entries::shared(Arc::clone(&buf), 0, 3);
        a.to_mut().push(4);
        assert_eq!(*buf, vec![1, 2, 3], "the shared buffer is untouched");
        assert_eq!(a, vec![1, 2, 3, 4]);
        assert_eq!(Entries::from(vec![1, 2, 3]), Entries::shared(buf, 0, 3));
        assert_eq!(format!("{:?}", Entries::from(vec![7])), "[7]");
    }
}
