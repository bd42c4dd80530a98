//! `bazaar:platform/auth`: a service granted `issues_tokens` asks the host
//! to sign a token for a user it has authenticated. The key never enters
//! the guest, and the roles are limited to the service's `token_roles`.

use super::generated::bazaar::platform::auth;
use crate::registry::ServiceContext;
use crate::state::RequestState;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// What a token request may touch: the service's context.
pub struct AuthView<'a> {
    service: &'a Arc<ServiceContext>,
}

struct HasAuth;

impl HasData for HasAuth {
    type Data<'a> = AuthView<'a>;
}

/// Adds `bazaar:platform/auth` to `linker`.
pub fn add_to_linker(linker: &mut Linker<RequestState>) -> wasmtime::Result<()> {
    auth::add_to_linker::<_, HasAuth>(linker, |state| {
        let (service, _, _) = state.publish_parts();
        AuthView { service }
    })
}

impl auth::Host for AuthView<'_> {
    async fn issue_token(
        &mut self,
        subject: String,
        roles: Vec<String>,
    ) -> wasmtime::Result<Result<String, String>> {
        let name = &self.service.name;
        let Some(tokens) = &self.service.tokens else {
            tracing::warn!(service = %name, "token request denied: the service is not granted issues_tokens");
            return Ok(Err(format!(
                "service `{name}` may not issue tokens; grant it `issues_tokens = true`"
            )));
        };
        if let Some(role) = roles
            .iter()
            .find(|r| !self.service.spec.token_roles.contains(r))
        {
            tracing::warn!(service = %name, %role, "token request denied: role not in token_roles");
            return Ok(Err(format!(
                "service `{name}` may not issue the role `{role}`; add it to `token_roles`"
            )));
        }
        if subject.is_empty() || subject.len() > 256 {
            return Ok(Err("the subject must be 1-256 characters".into()));
        }
        Ok(tokens.issue(&subject, &roles).map_err(|e| format!("{e:#}")))
    }
}
