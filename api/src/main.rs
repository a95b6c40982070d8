//! `hurry`: the Hurry Up Order server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hurry_api::settings::Settings;
use hurry_api::startup::Application;
use hurry_api::telemetry;

#[derive(Parser)]
#[command(
    name = "hurry",
    version,
    about = "Hurry Up Order: a flash-sale commerce engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the shop (the default command).
    Serve {
        /// Address to listen on (overrides http.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// A TOML file layered over the built-in configuration.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Serve the sandbox payment gateway alone (Toss and NicePay shapes, faults, ledger).
    PgSandbox {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// A TOML file layered over the built-in configuration (its [payments.*] keys are
        /// the ones the sandbox accepts, [pg_sandbox].admin_key its admin key).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// mimalloc instead of glibc's allocator: under a drop glibc's malloc and free took ~11 % of
/// the machine in this process; with mimalloc a 100,000-shopper drop was answered 2-15 %
/// faster (BENCHMARKS §10). The harness keeps glibc's: it was slower there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Named threads: `top -H` and `perf report --sort comm` tell the server from a load
    // generator on the same machine (both would be `tokio-rt-worker`).
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hurry-worker")
        .build()?
        .block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (listen, config) = match cli.command {
        Some(Command::Serve { listen, config }) => (listen, config),
        Some(Command::PgSandbox { listen, config }) => {
            let settings = Settings::load(config.as_deref(), &[])?;
            telemetry::init_logging(&settings.log);
            let sandbox = hurry_api::pg_sandbox::Sandbox::new(
                hurry_api::payments::sandbox_config(
                    &settings.payments,
                    settings.pg_sandbox.admin_key.clone(),
                ),
                None,
            );
            hurry_api::pg_sandbox::serve(listen, sandbox).await?;
            return Ok(());
        }
        None => (None, None),
    };
    let mut settings = Settings::load(config.as_deref(), &[])?;
    if let Some(listen) = listen {
        settings.http.listen = listen;
    }
    telemetry::init_logging(&settings.log);
    let app = Application::build(settings).await?;
    tracing::info!(addr = %app.local_addr(), "hurry up order is ready");
    app.run_until_stopped().await?;
    Ok(())
}
