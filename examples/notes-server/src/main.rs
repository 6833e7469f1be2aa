//! `notes-server`: run the example MCP server with its embedded authorization server.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use notes_server::{MCP_PATH, Settings, build};
use oauth_axum::AdminToken;
use oauth_core::Stores;
use oauth_core::selfcheck::KnownClient;
use oauth_core::users::create_user;

/// An MCP server with per-user notes, protected by OAuth 2.1.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "NOTES_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The URL clients use to reach this server (an https URL behind a tunnel or reverse
    /// proxy; defaults to http://<listen>).
    #[arg(long, env = "NOTES_PUBLIC_URL")]
    public_url: Option<String>,
    /// Where the authorization server keeps clients, grants and keys.
    /// `sqlite://path?mode=rwc`, `postgres://…`, or `memory` (nothing survives a restart).
    #[arg(long, global = true, env = "DATABASE_URL", default_value = "sqlite://data/notes-server.db?mode=rwc")]
    database_url: String,
    /// Private-use redirect URI schemes to accept. Default: `cursor`, so that Cursor connects
    /// out of the box; any app on the user's machine can claim a scheme, so list only the
    /// clients you expect.
    #[arg(long = "redirect-scheme", env = "NOTES_REDIRECT_SCHEMES", value_delimiter = ',', default_value = "cursor")]
    redirect_schemes: Vec<String>,
    /// Password of the first user (`admin`) on a fresh database; generated and printed once
    /// when not given.
    #[arg(long, env = "NOTES_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Clients you expect to connect (claude, chatgpt, claude-code, cursor, vscode,
    /// inspector): the server refuses to start with a configuration that would lock one out.
    #[arg(long = "expect-client", env = "NOTES_EXPECT_CLIENTS", value_delimiter = ',', value_parser = parse_known_client)]
    expected_clients: Vec<KnownClient>,
    /// Turns on the admin endpoint (`/admin/diagnose`, `/admin/clients/{id}`) behind this
    /// bearer secret (at least 32 characters). Off when not set.
    #[arg(long, env = "NOTES_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Reverse proxies or tunnels (IP addresses or CIDR ranges such as 10.0.0.0/8) whose
    /// `X-Forwarded-For` the per-address rate limits believe. Without one they key on the
    /// connecting address, which behind a proxy is the proxy's for every client.
    #[arg(long = "trusted-proxy", env = "NOTES_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<oauth_axum::IpRange>,
    /// Accept clients identified by a Client ID Metadata Document (an https `client_id` URL
    /// that this server fetches, public addresses only), as Claude Code and ChatGPT prefer.
    #[arg(long, env = "NOTES_METADATA_DOCUMENTS", default_value_t = true, action = clap::ArgAction::Set)]
    metadata_documents: bool,
    /// The operator's commands (the same as `mcp-auth`); without one, the server runs.
    #[command(subcommand)]
    command: Option<mcp_auth::Command>,
}

fn parse_known_client(s: &str) -> Result<KnownClient, String> {
    KnownClient::parse(s).ok_or_else(|| {
        let names: Vec<&str> = KnownClient::ALL.iter().map(|c| c.as_str()).collect();
        format!("unknown client '{s}'; known: {}", names.join(", "))
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,oauth::flow=info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notes-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(command) = &cli.command {
        return match mcp_auth::run(command, &cli.database_url).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the check found problems".into()),
            Err(e) => Err(e.to_string().into()),
        };
    }
    // Bind first, so that `--listen 127.0.0.1:0` yields a real port for the default public URL.
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let bound = listener.local_addr()?;
    let public_url = cli.public_url.clone().unwrap_or_else(|| format!("http://{bound}"));
    let stores = open_stores(&cli.database_url).await?;
    let mut settings = Settings::new(public_url.clone());
    settings.redirect_schemes = cli.redirect_schemes.clone();
    settings.expected_clients = cli.expected_clients.clone();
    settings.trusted_proxies = cli.trusted_proxies.clone();
    settings.metadata_documents = cli.metadata_documents;
    settings.admin_token = cli.admin_token.as_deref().map(AdminToken::new).transpose()?;
    let app = build(&settings, stores).await?;

    let users = app.server.stores().users.clone();
    let first_user = if users.list_users().await?.is_empty() {
        let generated = cli.admin_password.is_none();
        let password = cli
            .admin_password
            .clone()
            .unwrap_or_else(|| oauth_core::secret::ClientSecret::generate().secret()[..20].to_owned());
        create_user(users.as_ref(), "admin", &password, app.server.now()).await?;
        Some((password, generated))
    } else {
        None
    };

    println!("notes-server listening on {bound}");
    println!("  MCP server URL (paste into your client): {}{MCP_PATH}", public_url.trim_end_matches('/'));
    match first_user {
        Some((password, true)) => println!("  sign in as: admin / {password}   (shown once; stored only as a hash)"),
        Some((_, false)) => println!("  sign in as: admin, with the password you gave"),
        None => println!("  sign in with an existing user of this database (add one: notes-server users add NAME)"),
    }
    oauth_axum::spawn_sweeper(app.server.clone(), std::time::Duration::from_secs(600));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // Small JSON-RPC answers go out at once: without TCP_NODELAY, Nagle's algorithm holds each
    // one until the client's delayed ACK, some 40 ms per request under load.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    // The peer address feeds the authorization server's per-address rate limits.
    axum::serve(listener, app.router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn open_stores(url: &str) -> Result<Stores, Box<dyn std::error::Error>> {
    if url == "memory" {
        return Ok(oauth_store_memory::MemoryStore::new().into_stores());
    }
    Ok(mcp_auth::open_database(url).await.map_err(|e| e.to_string())?)
}
