//! An uploaded component, received: its pieces are kept as they arrive
//! while a blocking thread works out its content hash in parallel, so the
//! hash is ready about when the last byte is, with no second pass.
//!
//! An upload the same size as a kept version of its service (a redeploy,
//! or a roll back by upload) is first compared, byte for byte, with that
//! version's stored file. Equal, its hash is that version's and it is never
//! hashed: comparing runs at memory speed, several times faster than
//! SHA-256, which matters on a busy host (an 18 MB component). At the first
//! difference the thread hashes what it has so far and carries on hashing.

use super::{ComponentBytes, Pieces, hex};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::mpsc;

/// A kept component an upload may be a copy of.
#[derive(Debug, Clone)]
pub struct KeptCandidate {
    /// Its content hash: the version it deploys as.
    pub hash: String,
    /// Its stored file, written only once its content was hashed.
    pub path: PathBuf,
}

/// Collects a component as it arrives (see the module's doc).
pub struct ComponentHasher {
    pieces: Vec<Bytes>,
    /// Small pieces gathered into one, so that an upload sent in tiny
    /// chunks costs at most a few bytes of bookkeeping per kilobyte.
    small: bytes::BytesMut,
    len: usize,
    to_hash: mpsc::Sender<Bytes>,
    digest: tokio::task::JoinHandle<Digest>,
}

/// What the thread worked out.
struct Digest {
    hash: String,
    matched_kept: bool,
    kept_file_differs: bool,
}

/// Pieces shorter than this are copied together instead of kept apart.
const SMALL_PIECE: usize = 4 << 10;
/// Gathered small pieces are passed on once they reach this size.
const GATHERED: usize = 64 << 10;
/// Bytes of a kept file read at a time to compare.
const COMPARED: usize = 256 << 10;

impl ComponentHasher {
    /// Starts hashing on the Tokio runtime's blocking pool; must be called
    /// within the runtime.
    pub fn start() -> Self {
        Self::start_matching(Vec::new())
    }

    /// Starts comparing with `candidates` (those whose file cannot be
    /// opened are left out), hashing once none is left; must be called
    /// within the runtime.
    pub fn start_matching(candidates: Vec<KeptCandidate>) -> Self {
        let (to_hash, arrived) = mpsc::channel::<Bytes>();
        // Ends when the sender is dropped: by `finish`, or with the upload
        // when it is abandoned.
        let digest = tokio::task::spawn_blocking(move || work_out(&arrived, candidates));
        Self {
            pieces: Vec::new(),
            small: bytes::BytesMut::new(),
            len: 0,
            to_hash,
            digest,
        }
    }

    /// Adds the next piece: kept as it is (a reference-counted view, not
    /// copied) unless it is small.
    pub fn push(&mut self, piece: Bytes) {
        self.len += piece.len();
        if piece.len() < SMALL_PIECE {
            self.small.extend_from_slice(&piece);
            if self.small.len() >= GATHERED {
                self.pass_gathered();
            }
            return;
        }
        self.pass_gathered();
        self.pass(piece);
    }

    fn pass_gathered(&mut self) {
        if !self.small.is_empty() {
            let gathered = self.small.split().freeze();
            self.pass(gathered);
        }
    }

    fn pass(&mut self, piece: Bytes) {
        // The receiver lives until the sender is dropped, unless the
        // thread died; `finish` reports that.
        let _ = self.to_hash.send(piece.clone());
        self.pieces.push(piece);
    }

    /// Bytes received so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole component and its hash, once every piece is compared or
    /// hashed.
    pub async fn finish(mut self) -> anyhow::Result<ComponentBytes> {
        self.pass_gathered();
        drop(self.to_hash);
        let digest = self
            .digest
            .await
            .map_err(|e| anyhow::anyhow!("hashing the upload failed: {e}"))?;
        Ok(ComponentBytes {
            hash: digest.hash,
            bytes: Pieces::from_pieces(self.pieces),
            matched_kept: digest.matched_kept,
            kept_file_differs: digest.kept_file_differs,
        })
    }
}

/// The thread: compares the pieces with the candidates while any is left,
/// hashes them otherwise.
fn work_out(arrived: &mpsc::Receiver<Bytes>, candidates: Vec<KeptCandidate>) -> Digest {
    let mut matching = Matching::open(candidates);
    // Pieces compared so far, to hash should the comparison fail.
    let mut compared: Vec<Bytes> = Vec::new();
    let mut hasher = matching.is_empty().then(Sha256::new);
    for piece in arrived {
        if let Some(hasher) = &mut hasher {
            hasher.update(&piece);
            continue;
        }
        matching.compare(&piece);
        compared.push(piece);
        if matching.is_empty() {
            hasher = Some(hash_all(&std::mem::take(&mut compared)));
        }
    }
    let hasher = match hasher {
        Some(hasher) => hasher,
        None => {
            if let Some(hash) = matching.ended() {
                return Digest {
                    hash,
                    matched_kept: true,
                    kept_file_differs: false,
                };
            }
            hash_all(&compared)
        }
    };
    let hash = hex(&hasher.finalize());
    Digest {
        kept_file_differs: matching.differed.contains(&hash),
        hash,
        matched_kept: false,
    }
}

fn hash_all(pieces: &[Bytes]) -> Sha256 {
    let mut hasher = Sha256::new();
    for piece in pieces {
        hasher.update(piece);
    }
    hasher
}

/// The candidates still equal to the upload so far, each file read up to
/// where the upload has got.
struct Matching {
    open: Vec<(String, File)>,
    /// The hashes of those found different (or unreadable).
    differed: Vec<String>,
    buffer: Vec<u8>,
}

impl Matching {
    fn open(candidates: Vec<KeptCandidate>) -> Self {
        let open: Vec<(String, File)> = candidates
            .into_iter()
            .filter_map(|c| Some((c.hash, File::open(&c.path).ok()?)))
            .collect();
        let buffer = if open.is_empty() {
            Vec::new()
        } else {
            vec![0; COMPARED]
        };
        Self {
            open,
            differed: Vec::new(),
            buffer,
        }
    }

    fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Drops the candidates whose next bytes are not `piece`.
    fn compare(&mut self, piece: &[u8]) {
        let (buffer, differed) = (&mut self.buffer, &mut self.differed);
        self.open.retain_mut(|(hash, file)| {
            let same = next_bytes_are(file, piece, buffer);
            if !same {
                differed.push(std::mem::take(hash));
            }
            same
        });
    }

    /// The candidate the upload was all of, one whose file has ended too;
    /// the others count as different.
    fn ended(&mut self) -> Option<String> {
        for (hash, mut file) in self.open.drain(..) {
            let mut one = [0u8; 1];
            if matches!(file.read(&mut one), Ok(0)) {
                return Some(hash);
            }
            self.differed.push(hash);
        }
        None
    }
}

/// Whether `file`'s next bytes are `piece` (a read error counts as no).
fn next_bytes_are(file: &mut File, piece: &[u8], buffer: &mut [u8]) -> bool {
    piece.chunks(buffer.len().max(1)).all(|part| {
        let read = &mut buffer[..part.len()];
        file.read_exact(read).is_ok() && read == part
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::content_hash;

    fn pattern(len: u32, modulus: u32) -> Vec<u8> {
        (0..len).map(|i| (i % modulus) as u8).collect()
    }

    async fn upload(candidates: Vec<KeptCandidate>, whole: &[u8], piece: usize) -> ComponentBytes {
        let mut upload = ComponentHasher::start_matching(candidates);
        for part in whole.chunks(piece) {
            upload.push(Bytes::copy_from_slice(part));
        }
        assert_eq!(upload.len(), whole.len());
        upload.finish().await.expect("worked out")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_upload_in_pieces_is_hashed_and_kept_whole() {
        let whole = pattern(100_000, 251);
        let mut upload = ComponentHasher::start();
        for piece in whole.chunks(7_777) {
            upload.push(Bytes::copy_from_slice(piece));
        }
        assert_eq!(upload.len(), whole.len());
        let component = upload.finish().await.expect("hashed");
        assert_eq!(component.hash(), content_hash(&whole));
        let bytes = component.bytes();
        assert!(bytes.pieces().len() > 1, "kept as the pieces it came in");
        assert_eq!(bytes.len(), whole.len());
        assert_eq!(bytes.contiguous(), whole);
        assert_eq!(bytes.head(8), whole[..8]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tiny_pieces_are_gathered_in_order() {
        let whole = pattern(200_000, 253);
        let mut upload = ComponentHasher::start();
        let mut rest = whole.as_slice();
        // One-byte pieces, a large one in the middle, then small again.
        for _ in 0..70_000 {
            upload.push(Bytes::copy_from_slice(&rest[..1]));
            rest = &rest[1..];
        }
        upload.push(Bytes::copy_from_slice(&rest[..50_000]));
        rest = &rest[50_000..];
        for piece in rest.chunks(100) {
            upload.push(Bytes::copy_from_slice(piece));
        }
        let component = upload.finish().await.expect("hashed");
        assert_eq!(component.hash(), content_hash(&whole));
        let bytes = component.bytes();
        assert_eq!(bytes.contiguous(), whole);
        assert!(
            bytes.pieces().len() <= whole.len() / GATHERED + 3,
            "{} pieces kept for {} bytes",
            bytes.pieces().len(),
            whole.len()
        );
    }

    /// Kept files under a fresh directory: (hash, path) of each content.
    fn kept(contents: &[&[u8]]) -> (PathBuf, Vec<KeptCandidate>) {
        let dir = std::env::temp_dir().join(format!("bazaar-upload-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let candidates = contents
            .iter()
            .map(|content| {
                let hash = content_hash(content);
                let path = dir.join(format!("{hash}.wasm"));
                std::fs::write(&path, content).expect("kept file");
                KeptCandidate { hash, path }
            })
            .collect();
        (dir, candidates)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_upload_equal_to_a_kept_file_takes_its_hash_unhashed() {
        let whole = pattern(1_000_000, 251);
        let other = pattern(1_000_000, 241);
        let (dir, candidates) = kept(&[&other, &whole]);
        // Pieces larger than the comparison buffer, and smaller ones.
        for piece in [300_000, 10_000, 1_000] {
            let component = upload(candidates.clone(), &whole, piece).await;
            assert!(component.matched_kept(), "pieces of {piece}");
            assert_eq!(component.hash(), content_hash(&whole));
            assert_eq!(component.bytes().contiguous(), whole);
        }
        // The stored file is what is trusted: a wrong name is believed.
        let mislabelled = vec![KeptCandidate {
            hash: "mislabelled".into(),
            path: candidates[1].path.clone(),
        }];
        assert_eq!(
            upload(mislabelled, &whole, 65_536).await.hash(),
            "mislabelled"
        );
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_upload_that_differs_anywhere_from_the_kept_file_is_hashed() {
        let whole = pattern(700_000, 251);
        let (dir, candidates) = kept(&[&whole]);
        let mut first = whole.clone();
        first[0] ^= 1;
        let mut last = whole.clone();
        last[whole.len() - 1] ^= 1;
        let mut longer = whole.clone();
        longer.push(7);
        let shorter = whole[..whole.len() - 1].to_vec();
        for (what, bytes) in [
            ("first byte", first),
            ("last byte", last),
            ("one byte longer", longer),
            ("one byte shorter", shorter),
        ] {
            for piece in [100_000, 4_096] {
                let component = upload(candidates.clone(), &bytes, piece).await;
                assert!(!component.matched_kept(), "{what}, pieces of {piece}");
                assert!(!component.kept_file_differs(), "{what}");
                assert_eq!(component.hash(), content_hash(&bytes), "{what}");
                assert_eq!(component.bytes().contiguous(), bytes, "{what}");
            }
        }
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_damaged_kept_file_is_told_from_the_upload_it_should_be() {
        let whole = pattern(300_000, 251);
        let (dir, candidates) = kept(&[&whole]);
        let mut damaged = whole.clone();
        damaged[150_000] ^= 0x10;
        std::fs::write(&candidates[0].path, &damaged).expect("damage the kept file");
        let component = upload(candidates, &whole, 65_536).await;
        assert!(!component.matched_kept());
        assert!(component.kept_file_differs());
        assert_eq!(component.hash(), content_hash(&whole));
        std::fs::remove_dir_all(dir).expect("clean up");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_candidate_whose_file_is_gone_is_left_out() {
        let whole = pattern(200_000, 251);
        let (dir, candidates) = kept(&[&whole]);
        std::fs::remove_dir_all(&dir).expect("remove the kept file");
        let component = upload(candidates, &whole, 50_000).await;
        assert!(!component.matched_kept());
        assert_eq!(component.hash(), content_hash(&whole));
    }
}
