//! Quorum arithmetic: majorities, or the read and write quorums of a
//! [`FlexibleQuorum`](crate::FlexibleQuorum).

use crate::config::FlexibleQuorum;

/// How many servers (counting this one) make a read quorum (leader election,
/// Prepare) and a write quorum (deciding an entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Quorum {
    pub(crate) read: usize,
    pub(crate) write: usize,
}

impl Quorum {
    pub(crate) fn with(flexible: Option<FlexibleQuorum>, cluster_size: usize) -> Self {
        match flexible {
            Some(fq) => Self {
                read: fq.read_quorum_size,
                write: fq.write_quorum_size,
            },
            None => {
                let majority = cluster_size / 2 + 1;
                Self {
                    read: majority,
                    write: majority,
                }
            }
        }
    }

    pub(crate) fn is_read_quorum(&self, count: usize) -> bool {
        count >= self.read
    }

    pub(crate) fn is_write_quorum(&self, count: usize) -> bool {
        count >= self.write
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities_for_every_small_cluster_intersect() {
        for n in 1..=9 {
            let q = Quorum::with(None, n);
            assert_eq!(q.read, n / 2 + 1);
            assert!(q.read + q.write > n, "quorums of {n} must intersect");
            assert!(q.is_read_quorum(q.read) && !q.is_read_quorum(q.read - 1));
        }
    }

    #[test]
    fn flexible_sizes_are_taken_as_given() {
        let q = Quorum::with(
            Some(FlexibleQuorum {
                read_quorum_size: 4,
                write_quorum_size: 2,
            }),
            5,
        );
        assert!(q.is_write_quorum(2) && !q.is_read_quorum(3) && q.is_read_quorum(4));
    }
}
