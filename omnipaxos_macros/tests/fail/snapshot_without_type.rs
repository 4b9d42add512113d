use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
#[snapshot]
struct KeyValue(u64);

fn main() {}
