use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
#[snapshot = "KVSnapshot"]
struct KeyValue(u64);

fn main() {}
