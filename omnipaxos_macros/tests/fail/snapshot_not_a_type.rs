use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
#[snapshot(1)]
struct Number(u64);

#[derive(Clone, Debug, Entry)]
#[snapshot("KVSnapshot")]
struct Quoted(u64);

#[derive(Clone, Debug, Entry)]
#[snapshot(ty = KVSnapshot)]
struct Named(u64);

#[derive(Clone, Debug, Entry)]
#[snapshot(_)]
struct Inferred(u64);

#[derive(Clone, Debug, Entry)]
#[snapshot(impl Clone)]
struct Opaque(u64);

fn main() {}
