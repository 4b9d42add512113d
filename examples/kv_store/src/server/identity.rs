//! The identity file of a data directory: which server of which cluster
//! wrote it. Starting a server on another server's directory would make it
//! vote with someone else's promises and log, which can break consensus
//! safety; so the directory is claimed on first start and checked on every
//! start after.

use super::ServerError;
use omnipaxos::util::NodeId;
use serde::{Deserialize, Serialize};
use std::{
    fs,
    io::{self, Write},
    path::Path,
};

/// The file, inside the data directory.
pub(crate) const IDENTITY_FILE: &str = "kv_store.identity.json";

/// The log storage's directory, inside the data directory.
pub(crate) const LOG_DIR: &str = "log";

/// Who owns a data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The cluster.
    pub cluster_id: u64,
    /// The server.
    pub node_id: NodeId,
}

impl Identity {
    /// Makes sure `dir` belongs to this identity: creates it and writes the
    /// identity file if the directory is new or empty; otherwise reads the
    /// file and refuses a directory of another server or cluster, or one
    /// with data but no identity file.
    pub fn claim(self, dir: &Path) -> Result<(), ServerError> {
        let file = dir.join(IDENTITY_FILE);
        let io_err = |what: &str, e: io::Error| {
            ServerError::DataDir(format!("cannot {what} {}: {e}", dir.display()))
        };
        match fs::read(&file) {
            Ok(bytes) => {
                let found: Self = serde_json::from_slice(&bytes).map_err(|e| {
                    ServerError::DataDir(format!(
                        "the identity file {} is damaged ({e}); it says which server owns the data directory, \
                         so the server does not start",
                        file.display()
                    ))
                })?;
                if found == self {
                    Ok(())
                } else {
                    Err(ServerError::DataDir(format!(
                        "data directory {} belongs to node {} of cluster {}, but this is node {} of cluster {}; \
                         start with --id {} --cluster-id {} or use another directory",
                        dir.display(),
                        found.node_id,
                        found.cluster_id,
                        self.node_id,
                        self.cluster_id,
                        found.node_id,
                        found.cluster_id,
                    )))
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|e| io_err("create the data directory", e))?;
                let mut entries = fs::read_dir(dir).map_err(|e| io_err("list", e))?;
                if entries.next().is_some() {
                    return Err(ServerError::DataDir(format!(
                        "data directory {} is not empty but has no {IDENTITY_FILE}, so it is not known which \
                         server wrote it; use an empty directory",
                        dir.display()
                    )));
                }
                self.write(dir)
                    .map_err(|e| io_err("write the identity file into", e))
            }
            Err(e) => Err(io_err("read the identity file of", e)),
        }
    }

    /// Writes the file atomically: to a temporary name, synced, then renamed.
    fn write(self, dir: &Path) -> io::Result<()> {
        let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&self).map_err(io::Error::other)?)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(IDENTITY_FILE))?;
        fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_claimed_once_and_refused_to_another_server() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n1");
        let me = Identity {
            cluster_id: 7,
            node_id: 1,
        };
        me.claim(&dir).unwrap();
        me.claim(&dir).unwrap();
        let err = Identity {
            cluster_id: 7,
            node_id: 2,
        }
        .claim(&dir)
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("belongs to node 1 of cluster 7, but this is node 2 of cluster 7"),
            "{err}"
        );
        let err = Identity {
            cluster_id: 8,
            node_id: 1,
        }
        .claim(&dir)
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("of cluster 7, but this is node 1 of cluster 8"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_with_data_but_no_identity_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("something"), b"x").unwrap();
        let err = Identity {
            cluster_id: 1,
            node_id: 1,
        }
        .claim(tmp.path())
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not empty but has no"), "{err}");
    }
}
