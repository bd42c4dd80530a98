//! Secrets kept in files: the admin token and the token signing key.
//!
//! A generated secret is written with mode 0600 by `create_new`, so an
//! existing file (or a symlink planted in its place) is never overwritten,
//! and a secret file readable by others is refused rather than used.

use anyhow::Context as _;
use std::io::Write as _;
use std::path::Path;

/// The secret in `path`, trimmed; `None` if the file does not exist. Fails
/// when the file is readable or writable by anyone but its owner.
pub fn read_private(path: &Path) -> anyhow::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "{} is readable by others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    let secret = text.trim().to_owned();
    anyhow::ensure!(
        !secret.is_empty(),
        "{} is empty; delete it to have a new secret generated",
        path.display()
    );
    Ok(Some(secret))
}

/// The secret in `path`, generating one (64 random hex digits) with mode
/// 0600 when the file does not exist.
pub fn read_or_generate(path: &Path) -> anyhow::Result<String> {
    if let Some(secret) = read_private(path)? {
        return Ok(secret);
    }
    let secret = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!("generated a secret in {}", path.display());
    Ok(secret)
}

/// A new secret: 64 random hex digits (256 bits).
pub fn generate() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Writes `secret` to `path` with mode 0600, replacing what was there
/// (through a new file renamed into place, so a reader never sees half).
pub fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    if read_private(path).ok().flatten().as_deref() == Some(secret) {
        return Ok(());
    }
    let temp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&temp)?;
        file.write_all(secret.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        anyhow::Error::from(e).context(format!("cannot write {}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_is_private_and_stable() {
        let dir = std::env::temp_dir().join(format!("bazaar-secret-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("s.key");
        let first = read_or_generate(&path).expect("generate");
        assert_eq!(first.len(), 64);
        assert_eq!(read_or_generate(&path).expect("read"), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = read_private(&path).expect_err("a world-readable secret is refused");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        std::fs::remove_dir_all(dir).ok();
    }
}
