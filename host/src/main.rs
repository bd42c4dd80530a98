//! The `bazaar` binary.

use clap::Parser as _;

/// mimalloc instead of glibc's malloc: a fresh instance per request makes
/// and frees hundreds of small objects (store, WASI contexts, resources,
/// headers), and glibc spent ~8% of a request's CPU on them. Measured with
/// the benchmark's fresh hello: 59-61 µs of CPU per request instead of
/// 70-77 at 64 connections. Built without transparent huge pages
/// (`no_thp`): with them its arenas cost ~15 MiB more resident memory idle.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = bazaar::cli::Cli::parse();
    // Only `serve` reads [telemetry]; a file that does not parse is
    // reported by the command itself, with its line.
    let section = match &cli.command {
        bazaar::cli::Command::Serve { .. } => bazaar::config::GatewayConfig::load(&cli.config)
            .map(|c| c.telemetry)
            .unwrap_or_default(),
        _ => bazaar::config::TelemetrySection::default(),
    };
    let format = cli.log_format.or(section.log_format).unwrap_or_default();
    let _telemetry = match bazaar::telemetry::init(format, section.otlp_endpoint.as_deref()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match bazaar::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
