//! Type, lifetime and const parameters and where clauses are kept, and the
//! impl exists exactly where the type is `Clone + Debug`.

use omnipaxos::storage::{Entry, NoSnapshot, Snapshot};
use omnipaxos::macros::Entry;
use std::{fmt, marker::PhantomData};

#[derive(Clone, Debug, Entry)]
struct Tagged<T> {
    tag: u32,
    payload: T,
}

#[derive(Clone, Debug, Entry)]
struct Borrowed<'a> {
    text: &'a str,
}

#[derive(Clone, Debug, Entry)]
struct Fixed<const N: usize>([u8; N]);

#[derive(Clone, Debug, Entry)]
enum Either<A, B>
where
    A: Copy,
{
    Left(A),
    Right(B),
}

// `Clone` and `Debug` by hand, for every `T`: the derive must not demand
// `T: Clone` on top, so `Handle<NotClone>` is an entry.
#[derive(Entry)]
struct Handle<T>(u64, PhantomData<fn() -> T>);

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Self(self.0, PhantomData)
    }
}

impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handle").field(&self.0).finish()
    }
}

struct NotClone;

// A generic snapshot type whose `Snapshot` impl has bounds of its own.
#[derive(Clone, Debug, Entry)]
#[snapshot(Sum<T>)]
struct Add<T>(T);

#[derive(Clone, Debug)]
struct Sum<T>(u64, PhantomData<T>);

impl<T> Snapshot<Add<T>> for Sum<T>
where
    T: Clone + fmt::Debug + Into<u64>,
{
    fn create(entries: &[Add<T>]) -> Self {
        Self(entries.iter().map(|a| a.0.clone().into()).sum(), PhantomData)
    }

    fn merge(&mut self, delta: Self) {
        self.0 += delta.0;
    }

    fn use_snapshots() -> bool {
        true
    }
}

// Naming `NoSnapshot` on a generic type adds a bound that refers back to
// this very impl; the compiler must still accept it.
#[derive(Clone, Debug, Entry)]
#[snapshot(NoSnapshot)]
struct Plain<T>(T);

// A snapshot type that does not mention the entry's parameters and
// implements `Snapshot` for every entry type.
#[derive(Clone, Debug, Entry)]
#[snapshot(Len)]
struct Counted<T>(T);

#[derive(Clone, Debug)]
struct Len(usize);

impl<E: Entry> Snapshot<E> for Len {
    fn create(entries: &[E]) -> Self {
        Self(entries.len())
    }

    fn merge(&mut self, delta: Self) {
        self.0 += delta.0;
    }

    fn use_snapshots() -> bool {
        true
    }
}

fn snapshot_is<T: Entry<Snapshot = S>, S>() {}

fn main() {
    snapshot_is::<Tagged<String>, NoSnapshot>();
    snapshot_is::<Borrowed<'static>, NoSnapshot>();
    snapshot_is::<Fixed<4>, NoSnapshot>();
    snapshot_is::<Either<u8, String>, NoSnapshot>();
    snapshot_is::<Handle<NotClone>, NoSnapshot>();
    snapshot_is::<Add<u32>, Sum<u32>>();
    snapshot_is::<Plain<String>, NoSnapshot>();
    snapshot_is::<Counted<String>, Len>();

    let sum = Sum::create(&[Add(2_u32), Add(40)]);
    assert_eq!(sum.0, 42);
    let _ = Tagged { tag: 1, payload: () }.tag;
    let _ = Borrowed { text: "" }.text;
    let _ = Fixed([0; 4]).0;
    let _ = Plain(()).0;
    assert_eq!(Len::create(&[Counted(1), Counted(2)]).0, 2);
    let _ = (Either::<u8, ()>::Left(1), Either::<u8, ()>::Right(()));
}
