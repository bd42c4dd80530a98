//! `wasi:logging/logging` → `tracing`, with the service and version on every
//! line (and the request id, through the request's span) so logs from many
//! services in one host stay attributable. Messages are capped and their
//! control characters escaped, so a guest cannot forge host log lines.

use super::generated::wasi::logging::logging::{self, Level};
use super::stdio::escape_controls;
use crate::state::RequestState;
use wasmtime::component::{HasData, Linker};

/// Longest message kept; the rest is cut so a guest cannot flood the log.
const MAX_MESSAGE: usize = 16 * 1024;
/// Longest context kept.
const MAX_CONTEXT: usize = 256;

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
pub fn add_to_linker(linker: &mut Linker<RequestState>) -> wasmtime::Result<()> {
    logging::add_to_linker::<_, HasLogging>(linker, |state| {
        let (service, version) = state.identity();
        LogView { service, version }
    })
}

impl logging::Host for LogView<'_> {
    async fn log(
        &mut self,
        level: Level,
        mut context: String,
        mut message: String,
    ) -> wasmtime::Result<()> {
        truncate(&mut message, MAX_MESSAGE);
        truncate(&mut context, MAX_CONTEXT);
        let message = escape_controls(&message);
        let context = escape_controls(&context);
        let (service, version) = (self.service, crate::loader::short(self.version));
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(target: "bazaar::guest", $level, service = %service, version = %version, context = %context, "{message}")
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

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
}
