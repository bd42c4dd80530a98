//! The admin bearer token: where it comes from, how it is checked, and how
//! it is compared.
//!
//! A token set in the environment or `gateway.toml` must be at least
//! [`MIN_TOKEN_LEN`] characters; a blank or short one stops start-up.
//! Without one, the host generates `<data dir>/admin.token` with mode 0600
//! and refuses the file if its mode is ever wider.

use crate::config::GatewayConfig;
use crate::secrets;
use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq as _;

/// Environment variable that supplies the admin token.
pub const ADMIN_TOKEN_ENV: &str = "BAZAAR_ADMIN_TOKEN";
/// Shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 32;

/// The file a generated admin token is kept in.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// Whether `presented` is the token, compared in constant time (over
/// digests, so not even the length leaks).
pub fn matches(presented: &str, expected: &str) -> bool {
    let (a, b) = (
        Sha256::digest(presented.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    !expected.is_empty() && bool::from(a.ct_eq(&b))
}

/// The admin token: from the environment, else `gateway.toml`, else the
/// token file in the data directory, generating that file on first use.
pub fn resolve(config: &GatewayConfig, data_dir: &Path) -> anyhow::Result<String> {
    match configured(config)? {
        Some(token) => Ok(token),
        None => secrets::read_or_generate(&token_path(data_dir))
            .context("cannot set up the admin token"),
    }
}

/// The admin token if one is set or was generated before, without
/// generating one. A blank or short token is an error.
pub fn configured(config: &GatewayConfig) -> anyhow::Result<Option<String>> {
    let given = match std::env::var(ADMIN_TOKEN_ENV) {
        Ok(token) => Some((token, format!("${ADMIN_TOKEN_ENV}"))),
        Err(_) => config
            .admin
            .token
            .clone()
            .map(|t| (t, "[admin] token in gateway.toml".to_owned())),
    };
    if let Some((token, origin)) = given {
        let token = token.trim();
        anyhow::ensure!(
            token.len() >= MIN_TOKEN_LEN,
            "the admin token from {origin} is {}; use at least {MIN_TOKEN_LEN} random characters (e.g. `openssl rand -hex 32`), or unset it to have one generated",
            if token.is_empty() {
                "empty".to_owned()
            } else {
                format!("only {} characters", token.len())
            }
        );
        return Ok(Some(token.to_owned()));
    }
    secrets::read_private(&token_path(&config.data_dir()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_requires_exact_match() {
        assert!(matches("secret", "secret"));
        assert!(!matches("secreT", "secret"));
        assert!(!matches("secret2", "secret"));
        assert!(!matches("", ""), "an empty token never matches");
    }

    #[test]
    fn blank_and_short_configured_tokens_are_refused() {
        for token in ["", "   ", "short"] {
            let text = format!("[admin]\ntoken = \"{token}\"\n");
            let config = GatewayConfig::parse(&text, Path::new("g.toml"), PathBuf::from("/tmp"))
                .expect("parses");
            let err = configured(&config).expect_err("refused");
            assert!(err.to_string().contains("at least 32"), "{err}");
        }
    }
}
