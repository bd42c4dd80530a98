//! Every deployed component, kept by content hash at
//! `<data dir>/artifacts/<sha256>.wasm`.
//!
//! A file is written to a temporary name, fsynced, renamed into place and
//! the directory fsynced, so after a crash a hash's file is either whole or
//! absent. Reads check the hash, so a damaged file is reported, never run;
//! an upload of what a damaged file should hold replaces it
//! ([`ArtifactStore::replace`]). An upload equal to a stored file takes its
//! hash unhashed (`loader::upload`): the name is trusted because the file
//! is only ever written under the hash of its content.
//! On a fleet the directory is a cache of the components kept in the
//! fleet's database, so a host can run a version deployed through another.

use crate::fleet::FleetControl;
use crate::loader::{Pieces, content_hash};
use anyhow::Context as _;
use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The artifact directory, in front of the fleet's copies on a fleet.
pub struct ArtifactStore {
    dir: PathBuf,
    fleet: Option<Arc<FleetControl>>,
}

impl ArtifactStore {
    /// Opens (creating) `<data_dir>/artifacts`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("artifacts");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self { dir, fleet: None })
    }

    /// The same directory, as a cache of the fleet's components: what is
    /// stored goes to the fleet too, and what is missing here comes from it.
    pub fn with_fleet(mut self, fleet: Arc<FleetControl>) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// Stores `bytes` (content hash `hash`) here and, on a fleet, in the
    /// fleet's database, durably.
    pub async fn save(self: &Arc<Self>, hash: &str, bytes: Pieces) -> anyhow::Result<()> {
        if let Some(fleet) = &self.fleet {
            fleet.put_artifact(hash, &bytes.contiguous()).await?;
        }
        let (this, hash) = (Arc::clone(self), hash.to_owned());
        tokio::task::spawn_blocking(move || this.put(&hash, bytes.pieces())).await?
    }

    /// Stores `bytes` (content hash `hash`) here in place of a damaged
    /// copy, durably.
    pub async fn replace(self: &Arc<Self>, hash: &str, bytes: Pieces) -> anyhow::Result<()> {
        let (this, hash) = (Arc::clone(self), hash.to_owned());
        tokio::task::spawn_blocking(move || this.write(&hash, bytes.pieces())).await?
    }

    /// The component with `hash`, checked against its hash: from here, or
    /// (on a fleet) from the fleet's database, kept here for next time.
    pub async fn load(self: &Arc<Self>, hash: &str) -> anyhow::Result<Vec<u8>> {
        let (this, wanted) = (Arc::clone(self), hash.to_owned());
        let local = tokio::task::spawn_blocking(move || {
            if this.path(&wanted).exists() {
                this.get(&wanted).map(Some)
            } else {
                Ok(None)
            }
        })
        .await??;
        if let Some(bytes) = local {
            return Ok(bytes);
        }
        let Some(fleet) = &self.fleet else {
            return self.get(hash);
        };
        let bytes = fleet
            .get_artifact(hash)
            .await?
            .with_context(|| format!("the fleet has no component {hash}; deploy it again"))?;
        anyhow::ensure!(
            content_hash(&bytes) == hash,
            "the fleet's copy of component {hash} is damaged; deploy it again"
        );
        let (this, hash, keep) = (Arc::clone(self), hash.to_owned(), bytes.clone());
        tokio::task::spawn_blocking(move || this.put(&hash, &[keep.into()])).await??;
        Ok(bytes)
    }

    /// Deletes the components no record refers to, here and, on a fleet,
    /// in the fleet's database.
    pub async fn collect(self: &Arc<Self>, keep: HashSet<String>) -> anyhow::Result<()> {
        if let Some(fleet) = &self.fleet {
            fleet.retain_artifacts(&keep).await?;
        }
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.retain(&keep)).await??;
        Ok(())
    }

    /// Where the component with `hash` lives.
    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.wasm"))
    }

    /// Stores the component made of `pieces`, whose content hash is
    /// `hash`, durably; a no-op when it is already there.
    pub fn put(&self, hash: &str, pieces: &[bytes::Bytes]) -> anyhow::Result<()> {
        if self.path(hash).exists() {
            return Ok(());
        }
        self.write(hash, pieces)
    }

    /// Stores the component made of `pieces` under `hash`, replacing any
    /// file there, durably.
    fn write(&self, hash: &str, pieces: &[bytes::Bytes]) -> anyhow::Result<()> {
        let path = self.path(hash);
        let temp = self
            .dir
            .join(format!(".{hash}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            for piece in pieces {
                file.write_all(piece)?;
            }
            file.sync_all()?;
            std::fs::rename(&temp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            anyhow::Error::from(e).context(format!("cannot store component {}", path.display()))
        })
    }

    /// The component with `hash`, checked against its hash.
    pub fn get(&self, hash: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.path(hash);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read deployed component {}", path.display()))?;
        anyhow::ensure!(
            content_hash(&bytes) == hash,
            "deployed component {} is damaged (its content no longer matches its hash); deploy it again",
            path.display()
        );
        Ok(bytes)
    }

    /// Deletes every artifact whose hash is not in `keep`, and stray
    /// temporary files.
    pub fn retain(&self, keep: &HashSet<String>) -> anyhow::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir).context("list artifacts")? {
            let path = entry.context("list artifacts")?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let stale = match name.strip_suffix(".wasm") {
                Some(hash) => !keep.contains(hash),
                None => name.ends_with(".tmp"),
            };
            if stale {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_round_trip_and_damage_is_detected() {
        let dir = std::env::temp_dir().join(format!("bazaar-art-{}", uuid::Uuid::new_v4()));
        let store = ArtifactStore::open(&dir).expect("open");
        let bytes = b"\0asm component bytes".to_vec();
        let hash = content_hash(&bytes);
        // Stored from the pieces an upload arrived in, in order.
        let (head, tail) = bytes.split_at(7);
        let pieces = [
            bytes::Bytes::copy_from_slice(head),
            bytes::Bytes::copy_from_slice(tail),
        ];
        store.put(&hash, &pieces).expect("put");
        store.put(&hash, &pieces).expect("a second put is a no-op");
        assert_eq!(store.get(&hash).expect("get"), bytes);
        std::fs::write(store.path(&hash), b"tampered").expect("overwrite");
        let err = store.get(&hash).expect_err("damage must be caught");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert_eq!(store.retain(&HashSet::new()).expect("retain"), 1);
        assert!(!store.path(&hash).exists());
        std::fs::remove_dir_all(dir).ok();
    }
}
