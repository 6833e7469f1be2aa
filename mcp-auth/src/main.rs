//! `mcp-auth`: the operator's command line, on the same database as the server.

use std::process::ExitCode;

use clap::Parser;

/// Manage an MCP server's OAuth clients and users, and find out why a connection did not come
/// up.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The server's database: `sqlite://path?mode=rwc` or `postgres://…`.
    #[arg(long, global = true, env = "DATABASE_URL", default_value = "sqlite://data/notes-server.db?mode=rwc")]
    database_url: String,
    #[command(subcommand)]
    command: mcp_auth::Command,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match mcp_auth::run(&cli.command, &cli.database_url).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("mcp-auth: {e}");
            ExitCode::FAILURE
        }
    }
}
