//! Without `#[snapshot]` every kind of item gets `NoSnapshot`.

use omnipaxos::storage::{Entry, NoSnapshot};
use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
struct KeyValue {
    key: String,
    value: u64,
}

#[derive(Clone, Debug, Entry)]
struct Tuple(u64, String);

#[derive(Clone, Debug, Entry)]
struct Unit;

#[derive(Clone, Debug, Entry)]
enum Command {
    Put { key: String, value: u64 },
    Delete(String),
    Noop,
}

#[derive(Clone, Debug, Entry)]
enum Empty {}

fn has_no_snapshot<T: Entry<Snapshot = NoSnapshot>>() {}

fn main() {
    has_no_snapshot::<KeyValue>();
    has_no_snapshot::<Tuple>();
    has_no_snapshot::<Unit>();
    has_no_snapshot::<Command>();
    has_no_snapshot::<Empty>();
}
