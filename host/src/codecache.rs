//! Compiled components on disk, by content hash.
//!
//! A component compiled once is written, uncompressed, to
//! `<cache dir>/<content hash>-<engine fingerprint>.cwasm`, and loaded
//! again by mapping that file: no Cranelift, no decompression, no second
//! hash of the bytes. A cached 18 MB Python component loads in a few
//! milliseconds this way, where wasmtime's own cache (zstd, and a SHA-256
//! of the input on every lookup) spent most of a 180 ms deploy. The engine
//! fingerprint changes with wasmtime's version and the compiler settings,
//! so a file another engine wrote is never mistaken for this one's.

use anyhow::Context as _;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use wasmtime::Engine;
use wasmtime::component::Component;

const SUFFIX: &str = ".cwasm";

/// The lock every load of one content hash in progress takes in turn, and
/// the component the first of them loaded, for the others to share (a
/// `Component` is a reference to its code); gone with the last of them.
type Turn = Mutex<Option<Component>>;

/// Compiled components in one directory, for one engine.
#[derive(Debug, Clone)]
pub struct CodeCache {
    dir: PathBuf,
    fingerprint: String,
    /// Bytes of compiled code kept at most; the least recently used go first.
    limit: u64,
    /// One turn per content hash being loaded, so that services deploying
    /// the same component at once (a thousand at start-up, say) compile or
    /// map it once and share what the first one loaded.
    loading: Arc<Mutex<HashMap<String, Weak<Turn>>>>,
    /// Components compiled (not found in the cache) since start-up.
    compiled: Arc<AtomicU64>,
}

/// How much compiled code a cache keeps unless told otherwise.
pub const DEFAULT_LIMIT: u64 = 2 << 30;

impl CodeCache {
    /// The cache in `dir` (created if missing) for `engine`, holding at
    /// most `limit` bytes.
    pub fn new(engine: &Engine, dir: &Path, limit: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create cache directory {}", dir.display()))?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_owned(),
            fingerprint: format!("{:016x}", hasher.finish()),
            limit,
            loading: Arc::default(),
            compiled: Arc::default(),
        })
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir
            .join(format!("{hash}-{}{SUFFIX}", self.fingerprint))
    }

    /// The component whose content hash is `hash`, if the cache has it
    /// (compiled by this engine and still usable).
    pub fn load(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let turn = self.turn(hash);
        let mut shared = turn.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(component) = &*shared {
            return Some(component.clone());
        }
        let component = self.cached(engine, &self.path(hash))?;
        *shared = Some(component.clone());
        Some(component)
    }

    /// The component whose content hash is `hash`: from the cache, else
    /// compiled from `bytes()` (asked for only then) and written to the
    /// cache for next time.
    pub fn load_or_compile<B: AsRef<[u8]>>(
        &self,
        engine: &Engine,
        hash: &str,
        bytes: impl FnOnce() -> B,
    ) -> wasmtime::Result<Component> {
        let turn = self.turn(hash);
        let mut shared = turn.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(component) = &*shared {
            return Ok(component.clone());
        }
        let path = self.path(hash);
        if let Some(component) = self.cached(engine, &path) {
            *shared = Some(component.clone());
            return Ok(component);
        }
        let component = Component::new(engine, bytes())?;
        *shared = Some(component.clone());
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self
            .store(&path, &component)
            .and_then(|()| self.trim(self.limit))
        {
            // A cache that cannot be written costs a compile next time.
            tracing::warn!(path = %path.display(), error = format!("{e:#}"), "cannot cache a compiled component");
        }
        Ok(component)
    }

    /// The compiled component in `path`, if there is a usable one; an
    /// unusable file is removed. Called with the hash's turn held.
    fn cached(&self, engine: &Engine, path: &Path) -> Option<Component> {
        if !path.exists() {
            return None;
        }
        // SAFETY: files named `<hash>-<fingerprint>.cwasm` in this
        // directory are written only by `store` below, from
        // `Component::serialize` of this engine's configuration (the
        // fingerprint), and appear whole (written aside, then renamed).
        // wasmtime checks the header, version and settings of the file
        // and refuses one that does not match. The directory belongs to
        // the host, like its data directory.
        #[allow(unsafe_code)]
        let cached = unsafe { Component::deserialize_file(engine, path) };
        match cached {
            Ok(component) => {
                // Recently used: the last to go when the cache is trimmed.
                let _ = std::fs::File::options()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                Some(component)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = format!("{e:#}"), "ignoring an unusable compiled component");
                let _ = std::fs::remove_file(path);
                None
            }
        }
    }

    /// How many components this cache had to compile since start-up.
    pub fn compiled(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// The turn of `hash`, shared by every load of it in progress.
    fn turn(&self, hash: &str) -> Arc<Turn> {
        let mut loading = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(turn) = loading.get(hash).and_then(Weak::upgrade) {
            return turn;
        }
        loading.retain(|_, turn| turn.strong_count() > 0);
        let turn = Arc::new(Mutex::new(None));
        loading.insert(hash.to_owned(), Arc::downgrade(&turn));
        turn
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize().map_err(anyhow::Error::from)?;
        let temp = self
            .dir
            .join(format!(".{}.tmp", uuid::Uuid::new_v4().simple()));
        std::fs::write(&temp, bytes)
            .and_then(|()| std::fs::rename(&temp, path))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&temp);
            })
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Deletes the least recently used files until the cache holds at most
    /// `limit` bytes. Other hosts may share the directory; a file one of
    /// them has mapped stays readable to it after deletion.
    fn trim(&self, limit: u64) -> anyhow::Result<()> {
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot list {}", self.dir.display()))?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= limit {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component there is.
    const EMPTY_COMPONENT: &[u8] = &[0, b'a', b's', b'm', 0x0d, 0, 1, 0];

    fn cache() -> (Engine, CodeCache, PathBuf) {
        let engine = Engine::default();
        let dir = std::env::temp_dir().join(format!("bazaar-code-{}", uuid::Uuid::new_v4()));
        let cache = CodeCache::new(&engine, &dir, DEFAULT_LIMIT).expect("cache");
        (engine, cache, dir)
    }

    #[test]
    fn a_compiled_component_is_stored_once_and_loaded_again() {
        let (engine, cache, dir) = cache();
        cache
            .load_or_compile(&engine, "aa", || EMPTY_COMPONENT)
            .expect("compiles");
        let stored = cache.path("aa");
        assert!(
            stored.exists(),
            "expected {} after a compile",
            stored.display()
        );
        // Loaded from the file: the bytes given are not looked at.
        cache
            .load_or_compile(&engine, "aa", || -> &[u8] {
                panic!("a cached component is not read again")
            })
            .expect("loads from the cache");
        std::fs::remove_dir_all(dir).ok();
    }

    /// A component whose one core module defines `functions` functions,
    /// so that compiling it takes a while.
    fn component_with(functions: usize) -> Vec<u8> {
        fn leb(mut n: usize, out: &mut Vec<u8>) {
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                out.push(byte | if n > 0 { 0x80 } else { 0 });
                if n == 0 {
                    break;
                }
            }
        }
        fn section(out: &mut Vec<u8>, id: u8, body: &[u8]) {
            out.push(id);
            leb(body.len(), out);
            out.extend_from_slice(body);
        }
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        section(&mut module, 1, &[1, 0x60, 0, 1, 0x7f]); // one type: () -> i32
        let mut funcs = Vec::new();
        leb(functions, &mut funcs);
        funcs.resize(funcs.len() + functions, 0);
        section(&mut module, 3, &funcs);
        let mut code = Vec::new();
        leb(functions, &mut code);
        for _ in 0..functions {
            code.extend_from_slice(&[4, 0, 0x41, 0, 0x0b]); // i32.const 0
        }
        section(&mut module, 10, &code);
        let mut component = EMPTY_COMPONENT.to_vec();
        section(&mut component, 1, &module); // a core module
        component
    }

    #[test]
    fn loads_of_one_hash_while_one_is_in_progress_share_its_code() {
        let (engine, cache, dir) = cache();
        let bytes = component_with(10);
        let code = |c: &Component| c.image_range().start;
        let compiled = cache
            .load_or_compile(&engine, "bb", || bytes.as_slice())
            .expect("compiles");
        // While a load of "bb" is in progress (its turn held), every other
        // load gets the same code, whether compiled or mapped from the cache.
        let in_progress = cache.turn("bb");
        let mapped = cache.load(&engine, "bb").expect("cached");
        let again = cache.load(&engine, "bb").expect("cached");
        assert_eq!(code(&mapped), code(&again), "shared, not mapped twice");
        let compiled_again = cache
            .load_or_compile(&engine, "bb", || bytes.as_slice())
            .expect("loads");
        assert_eq!(code(&mapped), code(&compiled_again));
        // With no load in progress, nothing is kept: the next maps anew.
        drop(in_progress);
        drop((compiled, mapped, again, compiled_again));
        let fresh = cache.load(&engine, "bb").expect("cached");
        let other = cache.load(&engine, "bb").expect("cached");
        assert_ne!(code(&fresh), code(&other), "each maps its own copy");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn concurrent_loads_of_one_hash_compile_it_once() {
        let (engine, cache, dir) = cache();
        let bytes = Arc::new(component_with(3000));
        let start = Arc::new(std::sync::Barrier::new(4));
        let loads: Vec<_> = (0..4)
            .map(|_| {
                let (engine, cache) = (engine.clone(), cache.clone());
                let (bytes, start) = (Arc::clone(&bytes), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    cache
                        .load_or_compile(&engine, "same", || bytes.as_slice())
                        .map(drop)
                })
            })
            .collect();
        for load in loads {
            load.join().unwrap().expect("loads");
        }
        assert_eq!(
            cache.compiled(),
            1,
            "one compile for one hash, however many ask"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_damaged_file_is_replaced_by_a_compile() {
        let (engine, cache, dir) = cache();
        std::fs::write(cache.path("bb"), b"garbage").unwrap();
        cache
            .load_or_compile(&engine, "bb", || EMPTY_COMPONENT)
            .expect("compiles instead");
        assert_ne!(std::fs::read(cache.path("bb")).unwrap(), b"garbage");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn trimming_drops_the_least_recently_used_first() {
        let (engine, mut cache, dir) = cache();
        cache
            .load_or_compile(&engine, "old", || EMPTY_COMPONENT)
            .unwrap();
        let size = std::fs::metadata(cache.path("old")).unwrap().len();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(cache.path("old"))
            .and_then(|f| f.set_modified(past))
            .unwrap();
        // Room for one file: storing a second pushes the older one out.
        cache.limit = size + size / 2;
        cache
            .load_or_compile(&engine, "new", || EMPTY_COMPONENT)
            .unwrap();
        assert!(cache.path("new").exists());
        assert!(!cache.path("old").exists(), "the older file should be gone");
        std::fs::remove_dir_all(dir).ok();
    }
}
