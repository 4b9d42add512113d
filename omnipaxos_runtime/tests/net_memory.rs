//! What decoding a hostile frame costs in memory, measured with a counting
//! global allocator; in a test binary of its own, so that the allocator
//! counts nothing but this test.

mod common;

use common::{MAX_FRAME, Value};
use omnipaxos::util::NodeId;
use omnipaxos_runtime::{
    NodeConfig, OmniPaxosHandle, OmniPaxosNode,
    net::{NetConfig, NetStats, Transport},
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use peak_alloc::PeakAlloc;
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};
use tokio::io::AsyncWriteExt;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const WAIT: Duration = Duration::from_secs(30);

async fn wait_stats(t: &Transport, what: &str, cond: impl Fn(&NetStats) -> bool) {
    let waited = tokio::time::timeout(WAIT, async {
        while !cond(&t.stats()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "timed out waiting for {what}: {:?}",
        t.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_a_hostile_max_size_frame_allocates_almost_nothing() {
    // Node 2 of {1, 2, 3}, with the default bounds; the test plays node 1,
    // and node 3 is nowhere.
    let mut node_conf = NodeConfig::default();
    node_conf.set_pid(2);
    node_conf.set_peers(vec![1, 3]);
    let OmniPaxosHandle {
        omni_paxos,
        seq_paxos_handle,
        ble_handle,
    } = OmniPaxosNode::new(node_conf, MemoryStorage::<Value>::default());
    let nowhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let config = NetConfig::new(
        7,
        2,
        "127.0.0.1:0".parse().unwrap(),
        BTreeMap::from([(1, nowhere), (3, nowhere)]),
    );
    assert_eq!(config.max_frame_bytes, MAX_FRAME);
    let budget = config.max_decoded_bytes_per_frame;
    let transport = Transport::start(config, omni_paxos.clone(), seq_paxos_handle, ble_handle)
        .await
        .unwrap();
    let addr = transport.local_addr();

    let legit = common::frame(&common::large_batch(1, 2, MAX_FRAME));
    type Attack = fn(NodeId, NodeId, usize) -> Vec<u8>;
    let attacks: [(&str, Attack); 2] = [
        ("a stop-sign of 64 M node ids", common::stop_sign_attack),
        (
            "a batch of 64 M minimal entries",
            common::minimal_entries_attack,
        ),
    ];
    for (i, (what, attack)) in attacks.into_iter().enumerate() {
        let attack = common::frame(&attack(1, 2, MAX_FRAME));
        // A legitimate max-size frame first grows the link's read buffer to
        // its full size (memory the docs count as `max_frame_bytes`), and
        // shows what a legitimate frame of this size holds.
        let mut s = common::dial_as(addr, 7, 1, 2).await;
        let before = ALLOC.current_usage();
        ALLOC.reset_peak_usage();
        s.write_all(&legit).await.unwrap();
        wait_stats(&transport, "the legitimate batch handled", |st| {
            st.peers[&1].received == i as u64 + 1 && st.peers[&1].in_flight_bytes == 0
        })
        .await;
        let legit_peak = ALLOC.peak_usage() - before;

        let before = ALLOC.current_usage();
        ALLOC.reset_peak_usage();
        let _ = s.write_all(&attack).await;
        common::assert_closed_by_server(&mut s, WAIT).await;
        wait_stats(&transport, "the attack refused", |st| {
            st.peers[&1].invalid == i as u64 + 1
        })
        .await;
        let attack_peak = ALLOC.peak_usage().saturating_sub(before);
        println!(
            "{what}: refused with a peak of {:.2} MiB over the {:.0} MiB before it \
             (a legitimate batch of the same frame size: {:.0} MiB, read buffer included)",
            attack_peak as f64 / f64::from(1 << 20),
            before as f64 / f64::from(1 << 20),
            legit_peak as f64 / f64::from(1 << 20),
        );
        // Before the budget, these frames built 512 MiB and more.
        assert!(
            attack_peak < 4 << 20,
            "{what}: decoding allocated {attack_peak} bytes before it was refused"
        );
        assert!(legit_peak < MAX_FRAME * 2 + budget / 2, "{legit_peak}");
    }
    transport.shutdown().await;
    omni_paxos.shutdown().await;
}
