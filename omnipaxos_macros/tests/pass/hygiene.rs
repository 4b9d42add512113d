//! The generated impl uses absolute paths, so local items that shadow the
//! names it needs do not break it.

#![allow(dead_code)] // The shadowing items exist only to be in scope.

use ::omnipaxos::macros::Entry;

mod core {}
mod omnipaxos {}
mod storage {}
struct NoSnapshot;
trait Entry {}
trait Debug {}
trait Snapshot {}

#[derive(Clone, std::fmt::Debug, Entry)]
struct Plain(u64);

#[derive(Clone, std::fmt::Debug, Entry)]
struct Generic<T>(T);

fn is_entry<T: ::omnipaxos::storage::Entry>() {}

fn main() {
    is_entry::<Plain>();
    is_entry::<Generic<u8>>();
}
