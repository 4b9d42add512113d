//! [`PeerAddresses`]: where the servers of a new configuration listen, in
//! the metadata of the reconfiguration that creates it, so that every
//! transport can follow the change by itself.

use omnipaxos::{ReconfigurationRequest, util::NodeId};
use std::{
    collections::{BTreeMap, btree_map::Entry},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6},
};

/// The first bytes of encoded [`PeerAddresses`].
const MAGIC: [u8; 4] = *b"OPXA";
/// The version of the layout that [`PeerAddresses::encode`] writes.
const VERSION: u8 = 1;
/// Magic, version and entry count.
const HEADER_BYTES: usize = MAGIC.len() + 1 + 4;
/// The smallest entry: pid, family, IPv4 address, port.
const MIN_ENTRY_BYTES: usize = 8 + 1 + 4 + 2;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// Server addresses, pid -> address, to put in the metadata of a
/// reconfiguration ([`ReconfigurationRequest::metadata`], which becomes the
/// decided [`StopSign::metadata`](omnipaxos::util::StopSign::metadata)).
///
/// A [`Transport`](super::Transport) whose node decides a stop-sign whose
/// metadata decodes as `PeerAddresses` adds every new server listed there as
/// a peer (see [Changing the peers](super#changing-the-peers)). Build the
/// request with [`request`](Self::request):
///
/// ```
/// use omnipaxos_runtime::net::PeerAddresses;
/// use std::collections::BTreeMap;
///
/// let addrs = PeerAddresses::new(BTreeMap::from([(4, "10.0.0.4:7000".parse().unwrap())]));
/// let rc = addrs.request(vec![1, 2, 3, 4]);
/// assert_eq!(rc.new_configuration, [1, 2, 3, 4]);
/// let decoded = PeerAddresses::decode(rc.metadata.as_deref().unwrap()).unwrap();
/// assert_eq!(decoded, addrs);
/// ```
///
/// # Byte layout (version 1)
///
/// All integers are big-endian.
///
/// ```text
/// offset  bytes  field
///      0      4  magic "OPXA" (4f 50 58 41)
///      4      1  version: 1
///      5      4  n: the number of entries, u32
///      9         n entries, each:
///             8    pid, u64: not 0, each pid at most once
///             1    family: 4 (IPv4) or 6 (IPv6)
///             4    IPv4 address octets            (family 4)
///            16    IPv6 address octets            (family 6)
///             2    port, u16
///             4    IPv6 scope id, u32             (family 6 only)
/// ```
///
/// An IPv4 entry takes 15 bytes, an IPv6 one 31; an IPv6 address's flow
/// label is not kept (it is 0 in addresses one dials). [`encode`](Self::encode)
/// writes the entries in pid order. [`decode`](Self::decode) refuses other
/// magic, another version, an entry count the bytes cannot hold, an unknown
/// family, pid 0, a repeated pid and bytes after the last entry; it checks
/// every length before it reads and never panics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerAddresses {
    addrs: BTreeMap<NodeId, SocketAddr>,
}

/// Why bytes are not [`PeerAddresses`], from [`PeerAddresses::decode`]. The
/// bytes are at fault: other metadata, a newer writer, or corruption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerAddressesError {
    /// The bytes do not start with the magic `OPXA`: they are some other
    /// metadata (or too short to be any).
    #[error("not peer addresses: the magic is missing")]
    NotPeerAddresses,
    /// The version byte is not one this build reads; a newer node wrote it.
    #[error("peer addresses of version {0}, this node reads version {VERSION}")]
    Version(u8),
    /// The bytes end before the header or the entries they announce do.
    #[error("truncated: {needed} more bytes needed at offset {offset}")]
    Truncated {
        /// Where the missing bytes would start.
        offset: usize,
        /// How many are missing, at least.
        needed: usize,
    },
    /// An entry's family byte is neither 4 nor 6.
    #[error("unknown address family {family} at offset {offset}")]
    Family {
        /// The byte read.
        family: u8,
        /// Where it was read.
        offset: usize,
    },
    /// An entry has pid 0, which is no node's id.
    #[error("an entry has pid 0")]
    ZeroPid,
    /// Two entries have the same pid.
    #[error("pid {0} appears twice")]
    Duplicate(NodeId),
    /// Bytes follow the last entry.
    #[error("{0} bytes after the last entry")]
    TrailingBytes(usize),
}

impl PeerAddresses {
    /// The addresses `addrs`: pid -> where that server listens.
    pub fn new(addrs: BTreeMap<NodeId, SocketAddr>) -> Self {
        Self { addrs }
    }

    /// The addresses, by pid.
    pub fn addrs(&self) -> &BTreeMap<NodeId, SocketAddr> {
        &self.addrs
    }

    /// The address of `pid`, if listed.
    pub fn get(&self, pid: NodeId) -> Option<SocketAddr> {
        self.addrs.get(&pid).copied()
    }

    /// A request to reconfigure to `new_configuration` whose metadata is
    /// these addresses, encoded; pass it to
    /// [`OmniPaxosNode::reconfigure`](crate::OmniPaxosNode::reconfigure).
    /// List at least the servers that are new; listing all does no harm.
    pub fn request(&self, new_configuration: Vec<NodeId>) -> ReconfigurationRequest {
        ReconfigurationRequest::with(new_configuration, Some(self.encode()))
    }

    /// The addresses in the [byte layout](Self#byte-layout-version-1) above.
    /// Entries with pid 0 are left out, as [`decode`](Self::decode) would
    /// refuse them.
    pub fn encode(&self) -> Vec<u8> {
        let entries = self.addrs.iter().filter(|(pid, _)| **pid != 0);
        // More than u32::MAX entries would take over 60 GiB here first; were
        // there ever that many, the count and the entries written agree.
        let n = u32::try_from(entries.clone().count()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(HEADER_BYTES + n as usize * MIN_ENTRY_BYTES);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&n.to_be_bytes());
        for (pid, addr) in entries.take(n as usize) {
            out.extend_from_slice(&pid.to_be_bytes());
            match addr {
                SocketAddr::V4(a) => {
                    out.push(FAMILY_V4);
                    out.extend_from_slice(&a.ip().octets());
                    out.extend_from_slice(&a.port().to_be_bytes());
                }
                SocketAddr::V6(a) => {
                    out.push(FAMILY_V6);
                    out.extend_from_slice(&a.ip().octets());
                    out.extend_from_slice(&a.port().to_be_bytes());
                    out.extend_from_slice(&a.scope_id().to_be_bytes());
                }
            }
        }
        out
    }

    /// Reads addresses that [`encode`](Self::encode) wrote; see the
    /// [byte layout](Self#byte-layout-version-1) for what is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, PeerAddressesError> {
        let mut r = Reader { bytes, offset: 0 };
        if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(PeerAddressesError::NotPeerAddresses);
        }
        r.offset = MAGIC.len();
        let [version] = r.array()?;
        if version != VERSION {
            return Err(PeerAddressesError::Version(version));
        }
        let n = u32::from_be_bytes(r.array()?) as usize;
        // Every entry takes at least MIN_ENTRY_BYTES: a count the rest cannot
        // hold is refused before any entry is read.
        let least = n.saturating_mul(MIN_ENTRY_BYTES);
        if least > r.remaining() {
            return Err(PeerAddressesError::Truncated {
                offset: r.offset,
                needed: least - r.remaining(),
            });
        }
        let mut addrs = BTreeMap::new();
        for _ in 0..n {
            let pid = u64::from_be_bytes(r.array()?);
            let family_at = r.offset;
            let addr = match r.array()? {
                [FAMILY_V4] => {
                    let ip = Ipv4Addr::from(r.array::<4>()?);
                    SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes(r.array()?))
                }
                [FAMILY_V6] => {
                    let ip = Ipv6Addr::from(r.array::<16>()?);
                    let port = u16::from_be_bytes(r.array()?);
                    let scope_id = u32::from_be_bytes(r.array()?);
                    SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope_id))
                }
                [family] => {
                    return Err(PeerAddressesError::Family {
                        family,
                        offset: family_at,
                    });
                }
            };
            if pid == 0 {
                return Err(PeerAddressesError::ZeroPid);
            }
            match addrs.entry(pid) {
                Entry::Occupied(_) => return Err(PeerAddressesError::Duplicate(pid)),
                Entry::Vacant(v) => {
                    v.insert(addr);
                }
            }
        }
        match r.remaining() {
            0 => Ok(Self { addrs }),
            extra => Err(PeerAddressesError::TrailingBytes(extra)),
        }
    }
}

impl From<BTreeMap<NodeId, SocketAddr>> for PeerAddresses {
    fn from(addrs: BTreeMap<NodeId, SocketAddr>) -> Self {
        Self::new(addrs)
    }
}

/// Reads fixed-size fields off the front of a byte slice, checking each
/// length first.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PeerAddressesError> {
        let truncated = PeerAddressesError::Truncated {
            offset: self.offset,
            needed: N.saturating_sub(self.remaining()),
        };
        let field = self
            .bytes
            .get(self.offset..)
            .and_then(|rest| rest.get(..N))
            .and_then(|b| <[u8; N]>::try_from(b).ok())
            .ok_or(truncated)?;
        self.offset += N;
        Ok(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> PeerAddresses {
        PeerAddresses::new(BTreeMap::from([
            (1, "10.0.0.1:7000".parse().unwrap()),
            (4, "[fe80::1%3]:7004".parse().unwrap()),
        ]))
    }

    #[test]
    fn the_encoding_is_the_documented_layout() {
        let bytes = sample().encode();
        let mut expected = b"OPXA\x01\x00\x00\x00\x02".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 4, 10, 0, 0, 1, 0x1b, 0x58]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 4, 6, 0xfe, 0x80]);
        expected.extend_from_slice(&[0; 13]);
        expected.extend_from_slice(&[1, 0x1b, 0x5c, 0, 0, 0, 3]);
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), HEADER_BYTES + 15 + 31);
        assert_eq!(PeerAddresses::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn decode_refuses_each_kind_of_bad_input() {
        let good = sample().encode();
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            edit(&mut b);
            PeerAddresses::decode(&b)
        };
        use PeerAddressesError as E;
        assert_eq!(
            PeerAddresses::decode(b"{\"a\":1}"),
            Err(E::NotPeerAddresses)
        );
        assert_eq!(PeerAddresses::decode(b"OPX"), Err(E::NotPeerAddresses));
        assert_eq!(with(&|b| b[4] = 2), Err(E::Version(2)));
        assert_eq!(
            with(&|b| b.truncate(7)),
            Err(E::Truncated {
                offset: 5,
                needed: 2
            })
        );
        // A count of u32::MAX entries is refused before reading one.
        assert!(matches!(
            with(&|b| b[5..9].copy_from_slice(&[0xff; 4])),
            Err(E::Truncated { offset: 9, .. })
        ));
        assert_eq!(
            with(&|b| b[17] = 5),
            Err(E::Family {
                family: 5,
                offset: 17
            })
        );
        assert_eq!(with(&|b| b[16] = 0), Err(E::ZeroPid));
        assert_eq!(with(&|b| b[31] = 1), Err(E::Duplicate(1)));
        assert_eq!(with(&|b| b.push(0)), Err(E::TrailingBytes(1)));
        assert_eq!(
            with(&|b| b.truncate(b.len() - 1)),
            Err(E::Truncated {
                offset: 51,
                needed: 1
            })
        );
    }

    #[test]
    fn a_request_carries_the_encoded_addresses() {
        let rc = sample().request(vec![1, 2, 4]);
        assert_eq!(rc.new_configuration, [1, 2, 4]);
        assert_eq!(rc.metadata, Some(sample().encode()));
    }

    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
            (any::<[u8; 16]>(), any::<u16>(), any::<u32>()).prop_map(|(ip, port, scope)| {
                SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, scope))
            }),
        ]
    }

    proptest! {
        #[test]
        fn addresses_round_trip(addrs in proptest::collection::btree_map(1..u64::MAX, socket_addr(), 0..20)) {
            let addrs = PeerAddresses::new(addrs);
            prop_assert_eq!(PeerAddresses::decode(&addrs.encode()), Ok(addrs));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = PeerAddresses::decode(&bytes);
        }

        /// Garbage behind a valid header reaches the entry checks, which
        /// random bytes alone rarely do.
        #[test]
        fn random_entries_never_panic_and_what_decodes_round_trips(
            n in 0u32..6,
            body in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut bytes = b"OPXA\x01".to_vec();
            bytes.extend_from_slice(&n.to_be_bytes());
            bytes.extend_from_slice(&body);
            if let Ok(addrs) = PeerAddresses::decode(&bytes) {
                prop_assert_eq!(PeerAddresses::decode(&addrs.encode()), Ok(addrs));
            }
        }
    }
}
