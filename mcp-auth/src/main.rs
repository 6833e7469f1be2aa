//! `mcp-auth`: the operator's command line, on the same database as the server.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

/// Manage an MCP server's OAuth clients and users, and find out why a connection did not come
/// up.
#[derive(Debug, clap::Parser)]
#[command(version, about)]
struct Cli {
    /// The server's database: `sqlite://path?mode=rwc` or `postgres://…`. A URL with a
    /// password belongs in `DATABASE_URL` or a file (`--database-url-file`), not here.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://data/notes-server.db?mode=rwc"
    )]
    database_url: String,
    /// A file holding the database URL (for a URL with a password).
    #[arg(long, global = true, env = "DATABASE_URL_FILE")]
    database_url_file: Option<std::path::PathBuf>,
    /// The server's key-encryption key, when the server seals its keys with one: 32 bytes as
    /// hex or base64. Only from the environment or a file, never on the command line.
    #[arg(long, global = true, env = "MCP_AUTH_KEY_ENCRYPTION_KEY", hide_env_values = true, hide = true)]
    key_encryption_key: Option<String>,
    /// A file holding the server's key-encryption key.
    #[arg(long, global = true, env = "MCP_AUTH_KEY_ENCRYPTION_KEY_FILE", conflicts_with = "key_encryption_key")]
    key_encryption_key_file: Option<std::path::PathBuf>,
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
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let from_command_line = matches.value_source("database_url") == Some(clap::parser::ValueSource::CommandLine);
    let database_url = match mcp_auth::resolve_database_url(
        cli.database_url.clone(),
        from_command_line,
        cli.database_url_file.as_deref(),
    ) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("mcp-auth: {e}");
            return ExitCode::FAILURE;
        }
    };
    let key_encryption = match key_encryption(&cli, &matches) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("mcp-auth: {e}");
            return ExitCode::FAILURE;
        }
    };
    match mcp_auth::run(&cli.command, &database_url, key_encryption.as_ref()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("mcp-auth: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The key-encryption key from `MCP_AUTH_KEY_ENCRYPTION_KEY` or its file; refused on argv,
/// where every user of the machine can read it.
fn key_encryption(
    cli: &Cli,
    matches: &clap::ArgMatches,
) -> Result<Option<oauth_core::KeyEncryption>, mcp_auth::CliError> {
    mcp_auth::refuse_secret_on_command_line(
        matches,
        "key_encryption_key",
        "--key-encryption-key",
        "MCP_AUTH_KEY_ENCRYPTION_KEY",
        "--key-encryption-key-file",
    )?;
    let encoded = match &cli.key_encryption_key_file {
        Some(path) => Some(mcp_auth::read_secret_file(path)?),
        None => cli.key_encryption_key.clone(),
    };
    Ok(encoded.map(|k| oauth_core::KeyEncryption::parse(&k)).transpose()?)
}
