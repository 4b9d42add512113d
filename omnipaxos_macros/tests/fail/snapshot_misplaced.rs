use omnipaxos::macros::Entry;

#[derive(Clone, Debug, Entry)]
struct OnField {
    #[snapshot(::omnipaxos::storage::NoSnapshot)]
    value: u64,
}

#[derive(Clone, Debug, Entry)]
enum OnVariant {
    #[snapshot(::omnipaxos::storage::NoSnapshot)]
    Put(u64),
    Delete(#[snapshot(::omnipaxos::storage::NoSnapshot)] u64),
}

fn main() {}
