//! Every deployed component, kept by content hash at
//! `<data dir>/artifacts/<sha256>.wasm`.
//!
//! A file is written to a temporary name, fsynced, renamed into place and
//! the directory fsynced, so after a crash a hash's file is either whole or
//! absent. Reads check the hash, so a damaged file is reported, never run.

use crate::loader::content_hash;
use anyhow::Context as _;
use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The artifact directory.
pub struct ArtifactStore {
    dir: PathBuf,
}

impl ArtifactStore {
    /// Opens (creating) `<data_dir>/artifacts`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("artifacts");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self { dir })
    }

    /// Where the component with `hash` lives.
    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.wasm"))
    }

    /// Stores `bytes`, whose content hash is `hash`, durably; a no-op when
    /// it is already there.
    pub fn put(&self, hash: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.path(hash);
        if path.exists() {
            return Ok(());
        }
        let temp = self
            .dir
            .join(format!(".{hash}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
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
        store.put(&hash, &bytes).expect("put");
        store.put(&hash, &bytes).expect("a second put is a no-op");
        assert_eq!(store.get(&hash).expect("get"), bytes);
        std::fs::write(store.path(&hash), b"tampered").expect("overwrite");
        let err = store.get(&hash).expect_err("damage must be caught");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert_eq!(store.retain(&HashSet::new()).expect("retain"), 1);
        assert!(!store.path(&hash).exists());
        std::fs::remove_dir_all(dir).ok();
    }
}
