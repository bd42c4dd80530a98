//! The host's deployment records: for each service, the version in effect,
//! the versions it can roll back or forward to, where each came from, and
//! whether the service was added or removed live.
//!
//! They live in a small redb file, `<data dir>/control.redb`, written with
//! immediate durability before a deploy, rollback, addition or removal is
//! acknowledged, so a restart or a `kill -9` never undoes one.

use crate::config::ServiceSpec;
use crate::group_commit::GroupCommit;
use crate::loader::short;
use anyhow::Context as _;
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition, TableError};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

const SERVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("services");

/// Shortest version prefix accepted where a version is named.
pub const MIN_VERSION_PREFIX: usize = 7;

/// Where a service's routes, grants and config come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Its section in `gateway.toml`.
    GatewayToml,
    /// The spec given to `bazaar deploy` when it was added live.
    Live,
}

/// One known version of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Content hash.
    pub version: String,
    /// Where the bytes came from: a file path or the admin API.
    pub source: String,
    /// When it was last deployed, in milliseconds since the Unix epoch.
    pub deployed_at_ms: u64,
    /// Size of the component in bytes.
    pub size: u64,
    /// The version it replaced when it was last deployed; `rollback`
    /// returns here.
    pub previous: Option<String>,
}

/// Everything the host remembers about one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The service.
    pub name: String,
    /// Where its spec comes from.
    pub origin: Origin,
    /// Its spec, when it was added live (services in `gateway.toml` read
    /// theirs from the file at every start).
    pub spec: Option<ServiceSpec>,
    /// The version in effect.
    pub current: Option<String>,
    /// Known versions, oldest deploy first; at most `keep_versions` besides
    /// the current one.
    pub versions: Vec<VersionRecord>,
    /// Content hash of the `gateway.toml` component file when the host last
    /// deployed or saw it; a different hash is a new deploy.
    pub seed: Option<String>,
    /// Taken out with `bazaar remove`; kept so that stays true after a restart.
    pub removed: bool,
}

/// Why a version could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Nothing earlier is kept.
    #[error(
        "service `{0}` has no earlier version to roll back to; deploy a component, or pass --to with a version from `bazaar services`"
    )]
    NoEarlier(String),
    /// The named version is not kept.
    #[error(
        "service `{service}` has no version `{version}`; `bazaar services` lists the ones it keeps"
    )]
    Unknown {
        /// The service.
        service: String,
        /// The version asked for.
        version: String,
    },
    /// The prefix is too short to name a version.
    #[error(
        "`{version}` is too short to name a version of service `{service}`: give at least {MIN_VERSION_PREFIX} characters of its hash (`bazaar services` shows 12)"
    )]
    TooShort {
        /// The service.
        service: String,
        /// The prefix asked for.
        version: String,
    },
    /// The prefix fits several versions.
    #[error("`{version}` matches several versions of service `{service}`; give more of the hash")]
    Ambiguous {
        /// The service.
        service: String,
        /// The prefix asked for.
        version: String,
    },
}

impl ServiceRecord {
    /// A record with no versions yet.
    pub fn new(name: &str, origin: Origin, spec: Option<ServiceSpec>) -> Self {
        Self {
            name: name.to_owned(),
            origin,
            spec,
            current: None,
            versions: Vec::new(),
            seed: None,
            removed: false,
        }
    }

    /// Makes `version` current as a deploy: it remembers what it replaced,
    /// and the oldest versions beyond `keep` (besides the current) are forgotten.
    pub fn deploy(&mut self, mut version: VersionRecord, keep: usize) {
        version.previous = self.current.clone().filter(|c| *c != version.version);
        self.versions.retain(|v| v.version != version.version);
        self.current = Some(version.version.clone());
        self.versions.push(version);
        while self.versions.len() > keep + 1 {
            // The current version is last, so the first is never it.
            self.versions.remove(0);
        }
    }

    /// The version `rollback` activates: `to` (a full hash or a prefix of at
    /// least [`MIN_VERSION_PREFIX`] digits), or else the one the current
    /// version replaced.
    pub fn rollback_target(&self, to: Option<&str>) -> Result<String, VersionError> {
        match to {
            Some(prefix) => self.resolve(prefix),
            None => self
                .current_record()
                .and_then(|c| c.previous.clone())
                .filter(|p| self.versions.iter().any(|v| v.version == *p))
                .ok_or_else(|| VersionError::NoEarlier(self.name.clone())),
        }
    }

    /// The kept version `prefix` names.
    pub fn resolve(&self, prefix: &str) -> Result<String, VersionError> {
        let unknown = || VersionError::Unknown {
            service: self.name.clone(),
            version: prefix.to_owned(),
        };
        if prefix.len() < MIN_VERSION_PREFIX {
            return Err(VersionError::TooShort {
                service: self.name.clone(),
                version: prefix.to_owned(),
            });
        }
        let mut matches = self
            .versions
            .iter()
            .filter(|v| v.version.starts_with(prefix));
        match (matches.next(), matches.next()) {
            (Some(one), None) => Ok(one.version.clone()),
            (Some(_), Some(_)) => Err(VersionError::Ambiguous {
                service: self.name.clone(),
                version: prefix.to_owned(),
            }),
            _ => Err(unknown()),
        }
    }

    /// The record of the current version.
    pub fn current_record(&self) -> Option<&VersionRecord> {
        let current = self.current.as_deref()?;
        self.versions.iter().find(|v| v.version == current)
    }

    /// Whether `expected` (a full hash or a prefix) names the current version.
    pub fn is_current(&self, expected: &str) -> bool {
        match &self.current {
            Some(current) => expected.len() >= MIN_VERSION_PREFIX && current.starts_with(expected),
            None => expected.is_empty() || expected == "none",
        }
    }

    /// The current version, shortened, for messages.
    pub fn current_short(&self) -> &str {
        self.current.as_deref().map_or("none", short)
    }
}

/// The control database.
pub struct ControlDb {
    db: Database,
    /// Concurrent writers share one transaction and one sync.
    writers: GroupCommit<Encoded, Result<(), String>>,
}

/// Records as written: (name, JSON).
type Encoded = Vec<(String, Vec<u8>)>;

impl ControlDb {
    /// Opens (creating) `<data_dir>/control.redb`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("control.redb");
        let db = Database::create(&path).with_context(|| {
            format!(
                "cannot open the deployment records at {}; is another bazaar using this data directory?",
                path.display()
            )
        })?;
        Ok(Self {
            db,
            writers: GroupCommit::default(),
        })
    }

    /// Every record, by name.
    pub fn all(&self) -> anyhow::Result<Vec<ServiceRecord>> {
        let txn = self.db.begin_read().context("begin read")?;
        let table = match txn.open_table(SERVICES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e).context("open records"),
        };
        let mut records = Vec::new();
        for entry in table.iter().context("read records")? {
            let (name, value) = entry.context("read record")?;
            let record = serde_json::from_slice(value.value())
                .with_context(|| format!("the record of service `{}` is damaged", name.value()))?;
            records.push(record);
        }
        Ok(records)
    }

    /// The record of `name`.
    pub fn get(&self, name: &str) -> anyhow::Result<Option<ServiceRecord>> {
        let txn = self.db.begin_read().context("begin read")?;
        let table = match txn.open_table(SERVICES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e).context("open records"),
        };
        let value = table.get(name).context("read record")?;
        value
            .map(|v| serde_json::from_slice(v.value()))
            .transpose()
            .with_context(|| format!("the record of service `{name}` is damaged"))
    }

    /// Writes `records` in one durable transaction, all or none, shared
    /// with other writers' records when they write at the same time (as
    /// every service does at start-up): the first to come commits what is
    /// queued while the others wait for it, so concurrent writers pay for
    /// one sync, not one each, and none returns before its records are
    /// durable. Blocks: call it off the async threads.
    pub fn put(&self, records: &[&ServiceRecord]) -> anyhow::Result<()> {
        let encoded = records
            .iter()
            .map(|record| {
                let bytes = serde_json::to_vec(record).context("encode record")?;
                Ok((record.name.clone(), bytes))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.writers
            .submit(encoded, |group| {
                // In queue order: a later write of a record wins.
                let outcome = self
                    .commit(group.iter().flat_map(|(_, records)| records))
                    .map_err(|e| format!("{e:#}"));
                group
                    .into_iter()
                    .map(|(ticket, _)| (ticket, outcome.clone()))
                    .collect()
            })?
            .map_err(anyhow::Error::msg)
    }

    fn commit<'a>(
        &self,
        records: impl Iterator<Item = &'a (String, Vec<u8>)>,
    ) -> anyhow::Result<()> {
        let txn = self.db.begin_write().context("begin write")?;
        {
            let mut table = txn.open_table(SERVICES).context("open records")?;
            for (name, bytes) in records {
                table
                    .insert(name.as_str(), bytes.as_slice())
                    .context("write record")?;
            }
        }
        txn.commit().context("commit records")
    }
}

#[cfg(test)]
mod tests;

/// The deployment records wherever they live: this host's `control.redb`,
/// or the fleet's PostgreSQL database.
#[derive(Clone)]
pub enum Control {
    /// One host's records.
    Embedded(Arc<ControlDb>),
    /// The fleet's records.
    Fleet(Arc<crate::fleet::FleetControl>),
}

/// Held while a change is made: nothing else changes records meanwhile,
/// on this host or (on a fleet) any other.
pub struct ChangeLock {
    _fleet: Option<crate::fleet::control::FleetLock>,
}

impl Control {
    /// Every record.
    pub async fn all(&self) -> anyhow::Result<Vec<ServiceRecord>> {
        match self {
            Self::Embedded(db) => {
                let db = Arc::clone(db);
                tokio::task::spawn_blocking(move || db.all()).await?
            }
            Self::Fleet(fleet) => fleet.all().await,
        }
    }

    /// The record of `name`.
    pub async fn get(&self, name: &str) -> anyhow::Result<Option<ServiceRecord>> {
        match self {
            Self::Embedded(db) => db.get(name),
            Self::Fleet(fleet) => fleet.get(name).await,
        }
    }

    /// Writes `records` durably, in one transaction.
    pub async fn put(&self, records: Vec<ServiceRecord>) -> anyhow::Result<()> {
        match self {
            Self::Embedded(db) => {
                let db = Arc::clone(db);
                tokio::task::spawn_blocking(move || {
                    let refs: Vec<&ServiceRecord> = records.iter().collect();
                    db.put(&refs)
                })
                .await?
            }
            Self::Fleet(fleet) => {
                let refs: Vec<&ServiceRecord> = records.iter().collect();
                fleet.put(&refs).await
            }
        }
    }

    /// Takes the lock that orders changes across the fleet (a no-op on one
    /// host, whose deployer orders its own changes).
    pub async fn lock(&self) -> anyhow::Result<ChangeLock> {
        Ok(ChangeLock {
            _fleet: match self {
                Self::Embedded(_) => None,
                Self::Fleet(fleet) => Some(fleet.lock().await?),
            },
        })
    }

    /// The fleet's control state, on a fleet.
    pub fn fleet(&self) -> Option<&Arc<crate::fleet::FleetControl>> {
        match self {
            Self::Embedded(_) => None,
            Self::Fleet(fleet) => Some(fleet),
        }
    }
}
