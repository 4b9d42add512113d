use omnipaxos::macros::Entry;

#[derive(Clone, Debug)]
struct NotASnapshot;

#[derive(Clone, Debug, Entry)]
#[snapshot(NotASnapshot)]
struct KeyValue(u64);

fn main() {}
