use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
#[snapshot(FirstSnapshot, SecondSnapshot)]
struct KeyValue(u64);

fn main() {}
