//! `server --join URL,...`: a new server learns the cluster over HTTP.
//!
//! ```text
//!  joiner                                   servers of the cluster (GET /members)
//!    │ probe: cluster id, configuration C, members and addresses
//!    │   refuse: nobody answers, another cluster id, our id is a member of C
//!    │ wait (polling) until one of them shows a configuration after C that
//!    │   names us: it moved into it (its stop-sign is decided), or it was
//!    │   left out and shows the decided next configuration
//!    ▼ plan: that configuration's id and members (the node's peers), the
//!      servers before it (the join sources), everyone's address (the transport)
//! ```
//!
//! The node is then started with `OmniPaxosNode::join`: it asks the sources
//! how the old configuration ended and pulls its log, and the old servers
//! accept its connections because the decided stop-sign carried its address
//! ([`PeerAddresses`](omnipaxos_runtime::net::PeerAddresses), see
//! `POST /members`). The change is proposed by an operator (`kv_store
//! members replace ...`) before or after this server starts.

use crate::{
    api::{MemberStatus, MembersResponse},
    client::{ClientError, KvClient},
};
use omnipaxos::util::{ConfigurationId, NodeId};
use std::{collections::BTreeMap, net::SocketAddr, time::Duration};
use tracing::{info, warn};

/// How often the joiner asks the cluster whether a configuration names it:
/// the new configuration waits for this server's log pull, so often (a
/// `GET /members` is cheap).
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long one `GET /members` may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a server could not join; the operator's to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// `--join` names no server, or one that is not an HTTP address.
    #[error("--join: {0}")]
    BadUrl(String),
    /// None of the `--join` servers answered `GET /members`.
    #[error("cannot reach any --join server: {0}")]
    Unreachable(String),
    /// The servers belong to another cluster than `--cluster-id` says.
    #[error(
        "{url} belongs to cluster {theirs}, but this server is of cluster {ours} (--cluster-id)"
    )]
    OtherCluster {
        /// The server that answered.
        url: String,
        /// Its cluster id.
        theirs: u64,
        /// Ours.
        ours: u64,
    },
    /// Our id is a member of the configuration the cluster runs in.
    #[error(
        "server id {id} is taken: it is a member of configuration {configuration_id} (as {url} says); \
         pick another --id, or remove server {id} first"
    )]
    IdTaken {
        /// The id.
        id: NodeId,
        /// The configuration.
        configuration_id: ConfigurationId,
        /// The server that said so.
        url: String,
    },
    /// The configuration that names us lists a server without an address.
    #[error(
        "configuration {configuration_id} names server {member} but no server knows its address"
    )]
    NoAddress {
        /// The configuration.
        configuration_id: ConfigurationId,
        /// The member.
        member: NodeId,
    },
}

/// What the node of a joining server is started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The configuration it joins.
    pub(crate) configuration_id: ConfigurationId,
    /// Its servers, this one included.
    pub(crate) members: Vec<NodeId>,
    /// The servers of the configuration before it: they hold the log.
    pub(crate) sources: Vec<NodeId>,
    /// Where every member and source listens (not this server).
    pub(crate) addrs: BTreeMap<NodeId, SocketAddr>,
}

/// The `--join` servers and what they said.
pub(crate) struct Joiner {
    id: NodeId,
    cluster_id: u64,
    clients: Vec<KvClient>,
    /// Every address a server reported, by id.
    addrs: BTreeMap<NodeId, SocketAddr>,
    /// The latest configuration seen that does not name us, and its members:
    /// the sources of the one that will.
    before: (ConfigurationId, Vec<NodeId>),
}

impl Joiner {
    /// Asks the servers at `urls` for the cluster's configuration and checks
    /// that this server may join it.
    pub(crate) async fn probe(
        urls: &[String],
        id: NodeId,
        cluster_id: u64,
        token: Option<&str>,
    ) -> Result<Self, JoinError> {
        if urls.is_empty() {
            return Err(JoinError::BadUrl("name at least one server".into()));
        }
        let clients = urls
            .iter()
            .map(|u| {
                KvClient::new(u)
                    .map(|c| c.with_timeout(REQUEST_TIMEOUT).with_token(token))
                    .map_err(|e| JoinError::BadUrl(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut joiner = Self {
            id,
            cluster_id,
            clients,
            addrs: BTreeMap::new(),
            before: (0, Vec::new()),
        };
        let (url, first) = joiner.ask_any().await?;
        if first.members.iter().any(|m| m.id == id) {
            return Err(JoinError::IdTaken {
                id,
                configuration_id: first.configuration_id,
                url,
            });
        }
        info!(
            cluster_id,
            configuration_id = first.configuration_id,
            members = ?first.members.iter().map(|m| m.id).collect::<Vec<_>>(),
            "learnt the cluster's configuration; waiting for a configuration that names this server"
        );
        Ok(joiner)
    }

    /// Polls the servers until a configuration after the one probed names
    /// this server, and returns how to join it. Waits for as long as it
    /// takes (the change is proposed by someone else).
    ///
    /// Each server is asked on its own, [`POLL_INTERVAL`] after its last
    /// answer, so that one that does not answer (paused, or cut off: its
    /// request takes [`REQUEST_TIMEOUT`] to fail) holds up no other's. The
    /// new configuration may need this server for a quorum: while it waits
    /// on a server that does not answer, the cluster takes no writes.
    pub(crate) async fn wait_for_plan(mut self) -> Result<Plan, JoinError> {
        let mut asks = tokio::task::JoinSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            asks.spawn(ask_after(c.clone(), i, Duration::ZERO));
        }
        let mut last_answer = tokio::time::Instant::now();
        let mut warned: Option<tokio::time::Instant> = None;
        while let Some(done) = asks.join_next().await {
            let (i, answer) =
                done.expect("an ask neither panics nor is aborted while the set is polled");
            // An answer from another cluster is ignored here: the probe
            // checked the cluster, and a server that since says otherwise
            // is not one to follow.
            if let Ok(m) = self.checked(i, answer) {
                last_answer = tokio::time::Instant::now();
                if let Some(plan) = self.plan_from(&m)? {
                    info!(
                        configuration_id = plan.configuration_id,
                        members = ?plan.members,
                        sources = ?plan.sources,
                        "a decided configuration names this server; joining it"
                    );
                    return Ok(plan);
                }
            }
            let silent = Duration::from_secs(10);
            if last_answer.elapsed() >= silent && warned.is_none_or(|t| t.elapsed() >= silent) {
                warn!("none of the --join servers has answered for 10 s; still trying");
                warned = Some(tokio::time::Instant::now());
            }
            asks.spawn(ask_after(self.clients[i].clone(), i, POLL_INTERVAL));
        }
        // Each finished ask is replaced, and `probe` refuses an empty list.
        Err(JoinError::BadUrl("name at least one server".into()))
    }

    /// What one answer says: the plan, if it shows a configuration naming
    /// us that is decided; otherwise it updates what is known.
    fn plan_from(&mut self, m: &MembersResponse) -> Result<Option<Plan>, JoinError> {
        self.learn(&m.members);
        let named = |members: &[MemberStatus]| members.iter().any(|s| s.id == self.id);
        if named(&m.members) {
            if m.configuration_id > self.before.0 {
                return self.plan(m.configuration_id, &m.members).map(Some);
            }
            // An older configuration than the one probed: a server that
            // lags; others will tell.
            return Ok(None);
        }
        if m.configuration_id >= self.before.0 {
            self.before = (m.configuration_id, m.members.iter().map(|s| s.id).collect());
        }
        match &m.next_configuration {
            Some(next) if next.decided && named(&next.members) => {
                self.learn(&next.members);
                self.plan(next.configuration_id, &next.members).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn plan(
        &self,
        configuration_id: ConfigurationId,
        members: &[MemberStatus],
    ) -> Result<Plan, JoinError> {
        let members: Vec<NodeId> = members.iter().map(|s| s.id).collect();
        let sources = self.before.1.clone();
        let mut addrs = BTreeMap::new();
        for &pid in members.iter().chain(&sources) {
            if pid == self.id {
                continue;
            }
            match self.addrs.get(&pid) {
                Some(&a) => {
                    addrs.insert(pid, a);
                }
                // A source without an address is only one source less; a
                // member without one could never be reached.
                None if members.contains(&pid) => {
                    return Err(JoinError::NoAddress {
                        configuration_id,
                        member: pid,
                    });
                }
                None => {}
            }
        }
        Ok(Plan {
            configuration_id,
            members,
            sources,
            addrs,
        })
    }

    fn learn(&mut self, members: &[MemberStatus]) {
        for m in members {
            if let Some(a) = m.peer_addr.as_deref().and_then(|a| a.parse().ok()) {
                self.addrs.insert(m.id, a);
            }
        }
    }

    /// The first server that answers, in order, and its answer.
    async fn ask_any(&mut self) -> Result<(String, MembersResponse), JoinError> {
        let mut failures = Vec::new();
        for i in 0..self.clients.len() {
            match self.ask(i).await {
                Ok(m) => {
                    self.learn(&m.members);
                    self.before = (m.configuration_id, m.members.iter().map(|s| s.id).collect());
                    return Ok((self.clients[i].server().to_owned(), m));
                }
                Err(AskError::Client(e)) => failures.push(e.to_string()),
                Err(AskError::Cluster(e)) => return Err(e),
            }
        }
        Err(JoinError::Unreachable(failures.join("; ")))
    }

    async fn ask(&self, i: usize) -> Result<MembersResponse, AskError> {
        let answer = self.clients[i].members().await;
        self.checked(i, answer)
    }

    /// Server `i`'s `answer`, if it is one from our cluster.
    fn checked(
        &self,
        i: usize,
        answer: Result<MembersResponse, ClientError>,
    ) -> Result<MembersResponse, AskError> {
        let c = &self.clients[i];
        let m = answer.map_err(AskError::Client)?;
        if m.cluster_id != self.cluster_id {
            return Err(AskError::Cluster(JoinError::OtherCluster {
                url: c.server().to_owned(),
                theirs: m.cluster_id,
                ours: self.cluster_id,
            }));
        }
        Ok(m)
    }
}

/// The answer of `client` (the `--join` server `i`) to `GET /members`,
/// asked after `delay`.
async fn ask_after(
    client: KvClient,
    i: usize,
    delay: Duration,
) -> (usize, Result<MembersResponse, ClientError>) {
    tokio::time::sleep(delay).await;
    (i, client.members().await)
}

/// Why one server's answer is of no use.
enum AskError {
    /// It did not answer (or not with members).
    Client(ClientError),
    /// It is of another cluster.
    Cluster(JoinError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NextConfiguration;

    fn member(id: NodeId) -> MemberStatus {
        MemberStatus {
            id,
            peer_addr: Some(format!("127.0.0.1:{}", 7000 + id)),
        }
    }

    fn answer(configuration_id: ConfigurationId, ids: &[NodeId]) -> MembersResponse {
        MembersResponse {
            cluster_id: 1,
            configuration_id,
            members: ids.iter().copied().map(member).collect(),
            leader: ids.first().copied(),
            joining: false,
            next_configuration: None,
        }
    }

    /// Server 4, having probed configuration 1 of servers 1, 2 and 3.
    fn joiner() -> Joiner {
        let mut j = Joiner {
            id: 4,
            cluster_id: 1,
            clients: Vec::new(),
            addrs: BTreeMap::new(),
            before: (1, vec![1, 2, 3]),
        };
        j.learn(&answer(1, &[1, 2, 3]).members);
        j
    }

    fn addr(id: NodeId) -> SocketAddr {
        format!("127.0.0.1:{}", 7000 + id).parse().unwrap()
    }

    #[test]
    fn a_server_that_moved_into_a_configuration_naming_us_gives_the_plan() {
        let mut j = joiner();
        assert_eq!(j.plan_from(&answer(1, &[1, 2, 3])).unwrap(), None);
        let plan = j.plan_from(&answer(2, &[1, 2, 4])).unwrap().unwrap();
        assert_eq!(
            plan,
            Plan {
                configuration_id: 2,
                members: vec![1, 2, 4],
                // Server 3 is left out but holds the log: a source too.
                sources: vec![1, 2, 3],
                addrs: [1, 2, 3].into_iter().map(|id| (id, addr(id))).collect(),
            }
        );
    }

    #[test]
    fn a_left_out_server_showing_the_decided_change_gives_the_plan_and_a_proposal_does_not() {
        let mut j = joiner();
        let mut m = answer(1, &[1, 2, 3]);
        let next = |decided| NextConfiguration {
            configuration_id: 2,
            members: [1, 2, 4].into_iter().map(member).collect(),
            decided,
        };
        m.next_configuration = Some(next(false));
        assert_eq!(j.plan_from(&m).unwrap(), None, "not decided yet");
        m.next_configuration = Some(next(true));
        let plan = j.plan_from(&m).unwrap().unwrap();
        assert_eq!(
            (plan.configuration_id, plan.members, plan.sources),
            (2, vec![1, 2, 4], vec![1, 2, 3])
        );
    }

    #[test]
    fn a_change_without_us_moves_the_sources_on_and_a_member_without_address_is_refused() {
        let mut j = joiner();
        assert_eq!(j.plan_from(&answer(2, &[1, 2])).unwrap(), None);
        let mut m = answer(3, &[1, 2, 4, 5]);
        m.members[3].peer_addr = None;
        assert!(matches!(
            j.plan_from(&m),
            Err(JoinError::NoAddress {
                configuration_id: 3,
                member: 5
            })
        ));
        m.members[3].peer_addr = Some("127.0.0.1:7005".into());
        let plan = j.plan_from(&m).unwrap().unwrap();
        assert_eq!((plan.configuration_id, plan.sources), (3, vec![1, 2]));
    }

    #[tokio::test]
    async fn a_join_server_that_does_not_answer_holds_up_no_other_servers_answer() {
        // Server 1 takes the connection and never answers, as a paused
        // server does; server 2 shows a configuration that names us.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_url = format!("http://{}", silent.local_addr().unwrap());
        let answering = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let answering_url = format!("http://{}", answering.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/members",
            axum::routing::get(|| async { axum::Json(answer(2, &[1, 2, 4])) }),
        );
        tokio::spawn(async move { axum::serve(answering, app).await });
        let mut held = Vec::new();
        tokio::spawn(async move {
            while let Ok((conn, _)) = silent.accept().await {
                held.push(conn);
            }
        });
        let mut j = joiner();
        // A request timeout longer than the test's deadline: asked one after
        // the other, server 2 would be asked only after that.
        j.clients = [silent_url, answering_url]
            .iter()
            .map(|u| {
                KvClient::new(u)
                    .unwrap()
                    .with_timeout(Duration::from_secs(3600))
            })
            .collect();
        let plan = tokio::time::timeout(Duration::from_secs(60), j.wait_for_plan())
            .await
            .expect("the answering server's plan, without waiting for the silent one")
            .unwrap();
        assert_eq!((plan.configuration_id, plan.members), (2, vec![1, 2, 4]));
    }
}
