//! The admin bearer token: where it comes from, and how it is compared.

use crate::config::GatewayConfig;
use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// Environment variable that supplies the admin token.
pub const ADMIN_TOKEN_ENV: &str = "BAZAAR_ADMIN_TOKEN";

/// The file a generated admin token is kept in.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// Compares without leaking, through timing, how long a matching prefix is.
pub fn matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    !b.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin token: from the environment, else `gateway.toml`, else the
/// token file in the data directory, generating that file on first use.
pub fn resolve(config: &GatewayConfig, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(token) = configured(config)? {
        return Ok(token);
    }
    let path = token_path(data_dir);
    let token = uuid::Uuid::new_v4().simple().to_string();
    write_private(&path, &token)
        .with_context(|| format!("cannot write the admin token to {}", path.display()))?;
    tracing::info!("generated an admin token in {}", path.display());
    Ok(token)
}

/// The admin token if one is set or was generated before, without generating one.
pub fn configured(config: &GatewayConfig) -> anyhow::Result<Option<String>> {
    if let Ok(token) = std::env::var(ADMIN_TOKEN_ENV)
        && !token.trim().is_empty()
    {
        return Ok(Some(token.trim().to_owned()));
    }
    if let Some(token) = &config.admin.token {
        anyhow::ensure!(
            !token.trim().is_empty(),
            "[admin] token is empty; set a long random token, or remove the line to have one generated"
        );
        return Ok(Some(token.clone()));
    }
    let path = token_path(&config.data_dir());
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn token_comparison_requires_exact_match() {
        assert!(matches("secret", "secret"));
        assert!(!matches("secreT", "secret"));
        assert!(!matches("secret2", "secret"));
        assert!(!matches("", ""), "an empty token never matches");
    }
}
