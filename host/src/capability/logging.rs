//! `wasi:logging/logging` → `tracing`, with the service and version on every
//! line so logs from many services in one host stay attributable.

use super::generated::wasi::logging::logging::{self, Level};
use crate::state::HostState;
use wasmtime::component::{HasData, Linker};

/// Longest message kept; the rest is cut so a guest cannot flood the log.
const MAX_MESSAGE: usize = 16 * 1024;

/// Who is logging.
pub struct LogView<'a> {
    service: &'a str,
    version: &'a str,
}

struct HasLogging;

impl HasData for HasLogging {
    type Data<'a> = LogView<'a>;
}

/// Adds `wasi:logging/logging` to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    logging::add_to_linker::<_, HasLogging>(linker, |state| {
        let (service, version) = state.identity();
        LogView { service, version }
    })
}

impl logging::Host for LogView<'_> {
    async fn log(
        &mut self,
        level: Level,
        context: String,
        mut message: String,
    ) -> wasmtime::Result<()> {
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let (service, version) = (self.service, self.version);
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "bazaar::guest", $level, service, version, context, "{message}")
            };
        }
        match level {
            Level::Trace => emit!(tracing::Level::TRACE),
            Level::Debug => emit!(tracing::Level::DEBUG),
            Level::Info => emit!(tracing::Level::INFO),
            Level::Warn => emit!(tracing::Level::WARN),
            Level::Error | Level::Critical => emit!(tracing::Level::ERROR),
        }
        Ok(())
    }
}
