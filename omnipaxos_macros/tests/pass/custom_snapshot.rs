//! `#[snapshot(Type)]` names the snapshot type, by plain name or by path.

use omnipaxos::storage::{Entry, NoSnapshot, Snapshot};
use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
#[snapshot(CountSnapshot)]
struct Increment(u64);

#[derive(Clone, Debug, Default)]
struct CountSnapshot(u64);

impl Snapshot<Increment> for CountSnapshot {
    fn create(entries: &[Increment]) -> Self {
        Self(entries.iter().map(|i| i.0).sum())
    }

    fn merge(&mut self, delta: Self) {
        self.0 += delta.0;
    }

    fn use_snapshots() -> bool {
        true
    }
}

mod snapshots {
    use omnipaxos::storage::Snapshot;

    #[derive(Clone, Debug)]
    pub struct Latest(pub Option<super::Set>);

    impl Snapshot<super::Set> for Latest {
        fn create(entries: &[super::Set]) -> Self {
            Self(entries.last().cloned())
        }

        fn merge(&mut self, delta: Self) {
            if delta.0.is_some() {
                *self = delta;
            }
        }

        fn use_snapshots() -> bool {
            true
        }
    }
}

// A path works as well as a plain name.
#[derive(Clone, Debug, Entry)]
#[snapshot(self::snapshots::Latest)]
enum Set {
    To(u64),
    Clear,
}

// Naming `NoSnapshot` explicitly is the same as leaving the attribute out.
#[derive(Clone, Debug, Entry)]
#[snapshot(::omnipaxos::storage::NoSnapshot)]
struct Explicit;

fn snapshot_is<T: Entry<Snapshot = S>, S>() {}

fn main() {
    snapshot_is::<Increment, CountSnapshot>();
    snapshot_is::<Set, snapshots::Latest>();
    snapshot_is::<Explicit, NoSnapshot>();

    let snapshot = <Increment as Entry>::Snapshot::create(&[Increment(2), Increment(3)]);
    assert_eq!(snapshot.0, 5);
    let _ = (Set::To(1), Set::Clear);
}
