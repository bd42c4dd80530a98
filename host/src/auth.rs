//! Who is calling: tokens the host signs and verifies (JWT, HS256), and API
//! keys for machine clients.
//!
//! The signing key never reaches a guest. A service granted
//! `issues_tokens` asks the host to sign one (`bazaar:platform/auth`), and
//! the gateway verifies signature, expiry and issuer before any guest code
//! runs. The verified identity reaches services in `x-bazaar-user` and
//! `x-bazaar-roles`, headers the gateway strips from client input.

use crate::config::AuthSection;
use crate::secrets;
use anyhow::Context as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::time::Duration;
use subtle::ConstantTimeEq as _;

/// Environment variable that supplies the signing key.
pub const SIGNING_KEY_ENV: &str = "BAZAAR_JWT_KEY";
/// Shortest signing key or API key accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's subject, or `api-key:NAME`.
    pub subject: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// The API key's name, when it came from one.
    pub api_key: Option<String>,
}

impl Identity {
    /// Whether it carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past its `exp`.
    #[error("the token has expired; log in again")]
    Expired,
    /// Bad signature, issuer, shape or claims.
    #[error("the token is not valid: {0}")]
    Invalid(&'static str),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    iss: String,
    iat: u64,
    exp: u64,
}

/// Signs and verifies the host's tokens.
pub struct TokenAuthority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl: Duration,
}

impl TokenAuthority {
    /// The authority of `[auth]`: its key from `BAZAAR_JWT_KEY`, else
    /// `signing_key_file`, else `<data_dir>/jwt.key` (generated on first use
    /// with mode 0600, and refused if its mode is wider).
    pub fn load(config: &AuthSection, data_dir: &Path) -> anyhow::Result<Self> {
        let key = match Self::configured_key(config)? {
            Some(key) => key,
            None => secrets::read_or_generate(&data_dir.join("jwt.key"))?,
        };
        Self::with_key(&key, config)
    }

    /// The signing key given to the host: `BAZAAR_JWT_KEY`, else
    /// `signing_key_file`; `None` when neither is set.
    pub fn configured_key(config: &AuthSection) -> anyhow::Result<Option<String>> {
        match std::env::var(SIGNING_KEY_ENV) {
            Ok(key) if !key.trim().is_empty() => Ok(Some(key.trim().to_owned())),
            _ => match &config.signing_key_file {
                Some(path) => Ok(Some(secrets::read_private(path)?.with_context(|| {
                    format!("the signing key file {} does not exist", path.display())
                })?)),
                None => Ok(None),
            },
        }
    }

    /// The authority of `[auth]` with signing key `key`.
    pub fn with_key(key: &str, config: &AuthSection) -> anyhow::Result<Self> {
        anyhow::ensure!(
            key.len() >= MIN_SECRET_LEN,
            "the token signing key must be at least {MIN_SECRET_LEN} bytes"
        );
        Ok(Self::from_secret(
            key.as_bytes(),
            &config.issuer,
            Duration::from_secs(config.token_ttl_s),
        ))
    }

    /// An authority with this secret.
    pub fn from_secret(secret: &[u8], issuer: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            ttl,
        }
    }

    /// A token for `subject` with `roles`, valid for the configured time.
    pub fn issue(&self, subject: &str, roles: &[String]) -> anyhow::Result<String> {
        self.issue_for(subject, roles, self.ttl)
    }

    /// A token for `subject` with `roles`, valid for `ttl`.
    pub fn issue_for(
        &self,
        subject: &str,
        roles: &[String],
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let now = crate::events::now_ms() / 1000;
        let claims = Claims {
            sub: subject.to_owned(),
            roles: roles.to_vec(),
            iss: self.issuer.clone(),
            iat: now,
            exp: now + ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("cannot sign a token")
    }

    /// The identity in `token`, if its signature, expiry and issuer hold.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::Invalid("bad signature"),
                ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer"),
                ErrorKind::InvalidAlgorithm => TokenError::Invalid("wrong algorithm"),
                _ => TokenError::Invalid("malformed"),
            })?;
        Ok(Identity {
            subject: data.claims.sub,
            roles: data.claims.roles,
            api_key: None,
        })
    }
}

/// The API keys of `[auth.api_keys]`, kept as SHA-256 digests.
#[derive(Default)]
pub struct ApiKeys {
    keys: Vec<(String, [u8; 32], Vec<String>)>,
}

impl ApiKeys {
    /// Reads each key from its environment variable or the file.
    pub fn load(config: &AuthSection) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        for (name, entry) in &config.api_keys {
            let key = match (&entry.key_env, &entry.key) {
                (Some(var), _) => std::env::var(var).with_context(|| {
                    format!("API key `{name}`: set the environment variable {var}")
                })?,
                (None, Some(key)) => key.clone(),
                (None, None) => anyhow::bail!("API key `{name}` has no key"),
            };
            anyhow::ensure!(
                key.trim().len() >= MIN_SECRET_LEN,
                "API key `{name}` must be at least {MIN_SECRET_LEN} characters"
            );
            keys.push((name.clone(), digest(key.trim()), entry.roles.clone()));
        }
        Ok(Self { keys })
    }

    /// The identity of `presented`, if it is one of the keys.
    pub fn verify(&self, presented: &str) -> Option<Identity> {
        let presented = digest(presented.trim());
        // Compare against every key, so timing says nothing about which.
        let mut found = None;
        for (name, key, roles) in &self.keys {
            if bool::from(key.ct_eq(&presented)) {
                found = Some(Identity {
                    subject: format!("api-key:{name}"),
                    roles: roles.clone(),
                    api_key: Some(name.clone()),
                });
            }
        }
        found
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> TokenAuthority {
        TokenAuthority::from_secret(&[7; 32], "bazaar", Duration::from_secs(60))
    }

    #[test]
    fn a_token_round_trips_with_its_roles() {
        let auth = authority();
        let token = auth.issue("u1", &["admin".into()]).expect("sign");
        let who = auth.verify(&token).expect("valid");
        assert_eq!(who.subject, "u1");
        assert!(who.has_role("admin"));
    }

    #[test]
    fn tampered_expired_and_foreign_tokens_are_refused() {
        let auth = authority();
        let token = auth.issue("u1", &[]).expect("sign");
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            auth.verify(&tampered),
            Err(TokenError::Invalid(_))
        ));
        // Leeway is 5 s, so build one well in the past.
        let claims = Claims {
            sub: "u1".into(),
            roles: vec![],
            iss: "bazaar".into(),
            iat: 1,
            exp: 2,
        };
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&[7; 32]),
        )
        .expect("sign");
        assert_eq!(auth.verify(&old), Err(TokenError::Expired));
        let other = TokenAuthority::from_secret(&[8; 32], "bazaar", Duration::from_secs(60));
        assert!(other.verify(&token).is_err(), "another key");
        let elsewhere = TokenAuthority::from_secret(&[7; 32], "elsewhere", Duration::from_secs(60));
        assert!(elsewhere.verify(&token).is_err(), "another issuer");
    }

    #[test]
    fn api_keys_match_exactly() {
        let keys = ApiKeys {
            keys: vec![(
                "warehouse".into(),
                digest("k".repeat(40).as_str()),
                vec!["stock".into()],
            )],
        };
        let who = keys.verify(&"k".repeat(40)).expect("known key");
        assert_eq!(who.api_key.as_deref(), Some("warehouse"));
        assert!(keys.verify(&"k".repeat(39)).is_none());
    }
}
