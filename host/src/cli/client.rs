//! A client of a running host's admin API, for the CLI.

use crate::admin::token::{ADMIN_TOKEN_ENV, configured};
use crate::config::GatewayConfig;
use anyhow::{Context as _, bail};
use std::path::Path;

/// Where the admin API is and how to authenticate.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Admin API base URL; defaults to `[admin] listen` of the gateway file.
    #[arg(long)]
    pub admin_url: Option<String>,
    /// Admin token; defaults to $BAZAAR_ADMIN_TOKEN, the gateway file, or
    /// the token file in the data directory.
    #[arg(long)]
    pub token: Option<String>,
}

/// Talks to the admin API.
pub struct AdminClient {
    base: String,
    token: String,
    /// Where the token came from, for a refusal's message.
    token_from: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the host of `config_path`, or the one `args` names.
    pub fn new(config_path: &Path, args: AdminArgs) -> anyhow::Result<Self> {
        let config = if config_path.exists() || args.admin_url.is_none() || args.token.is_none() {
            Some(GatewayConfig::load(config_path)?)
        } else {
            None
        };
        let base = match (args.admin_url, &config) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(config)) => format!("http://{}", config.admin.listen),
            (None, None) => bail!("pass --admin-url or a gateway file with --config"),
        };
        let (token, token_from) = match (args.token, &config) {
            (Some(token), _) => (token, "--token".to_owned()),
            (None, Some(config)) => configured(config)?.with_context(|| {
                format!("no admin token: set {ADMIN_TOKEN_ENV}, pass --token, or start the host once so it writes one")
            })?,
            (None, None) => bail!("pass --token or set {ADMIN_TOKEN_ENV}"),
        };
        Ok(Self {
            base,
            token,
            token_from,
            http: reqwest::Client::new(),
        })
    }

    /// A request to `path` on the admin API.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Like [`AdminClient::exchange`], but a 404 answer is `None`.
    pub async fn exchange_optional<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Option<T>> {
        match self.exchange(request).await {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.to_string().ends_with("(HTTP 404 Not Found)") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `request` and decodes its JSON answer; an error answer becomes
    /// an error carrying the host's message.
    pub async fn exchange<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the admin API at {}; is `bazaar serve` running?",
                self.base
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("cannot read the admin API's answer")?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(text);
            if status == reqwest::StatusCode::UNAUTHORIZED {
                // The host's message speaks to raw HTTP clients; this one
                // to a CLI user.
                bail!(
                    "the admin API refused the admin token (HTTP {status}); the token came from {}, and the host's is in its data directory's admin.token unless [admin] token or ${ADMIN_TOKEN_ENV} set it",
                    self.token_from
                );
            }
            bail!("{message} (HTTP {status})");
        }
        serde_json::from_str(&text)
            .with_context(|| format!("unexpected answer from the admin API: {text}"))
    }
}
