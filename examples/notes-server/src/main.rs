//! `notes-server`: run the example MCP server with its embedded authorization server.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use notes_server::{MCP_PATH, Settings, build};
use oauth_core::users::create_user;
use oauth_core::{Clock as _, Stores};

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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Why did a connection not come up? Each client's connection attempts, the step where each
    /// one stopped, the exact reason and the fix, from the flow events in the database.
    Diagnose {
        /// Only this client.
        #[arg(long)]
        client_id: Option<String>,
        /// How far back to look: `90s`, `30m`, `1h`, `2d`.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Users of the sign-in page.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Pre-registered clients (for example the id and secret typed into Claude's "Advanced
    /// settings").
    #[command(subcommand)]
    Clients(ClientsCommand),
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Adds a user; the password is read from the first line of standard input.
    Add {
        /// The username.
        username: String,
    },
    /// Sets a user's password, read from the first line of standard input.
    Passwd {
        /// The username.
        username: String,
    },
    /// Lists the users.
    List,
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Registers a client and prints its id and, for a confidential client, its secret (once).
    Add {
        /// The name shown on the consent page.
        #[arg(long)]
        name: String,
        /// A redirect URI (repeat for several).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// Give the client a secret (client_secret_post or client_secret_basic).
        #[arg(long)]
        confidential: bool,
        /// Skip the consent page for this client.
        #[arg(long)]
        trusted: bool,
    },
    /// Lists the clients.
    List,
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
    match &cli.command {
        None => {}
        Some(Command::Diagnose { client_id, since, json }) => {
            return diagnose(&cli.database_url, client_id.as_deref(), since, *json).await;
        }
        Some(Command::Users(cmd)) => return users(&cli.database_url, cmd).await,
        Some(Command::Clients(cmd)) => return clients(&cli, cmd).await,
    }
    // Bind first, so that `--listen 127.0.0.1:0` yields a real port for the default public URL.
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let bound = listener.local_addr()?;
    let public_url = cli.public_url.clone().unwrap_or_else(|| format!("http://{bound}"));
    let stores = open_stores(&cli.database_url).await?;
    let settings = Settings { public_url: public_url.clone(), redirect_schemes: cli.redirect_schemes.clone() };
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
    // The peer address feeds the authorization server's per-address rate limits.
    axum::serve(listener, app.router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn diagnose(
    database_url: &str,
    client: Option<&str>,
    since: &str,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let stores = open_stores(database_url).await?;
    let client = client.map(oauth_core::types::ClientId::parse).transpose()?;
    let since = oauth_core::SystemClock.now().minus(parse_age(since)?);
    let report = oauth_core::diagnose::diagnose(stores.events.as_ref(), client.as_ref(), since).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.is_empty() {
        println!("no flow events in that period");
    } else {
        for d in &report {
            print!("{}", d.render());
        }
    }
    Ok(())
}

async fn users(database_url: &str, cmd: &UsersCommand) -> Result<(), Box<dyn std::error::Error>> {
    let stores = open_stores(database_url).await?;
    let users = stores.users.as_ref();
    match cmd {
        UsersCommand::Add { username } => {
            let user = create_user(users, username, &read_password()?, oauth_core::SystemClock.now()).await?;
            println!("added user '{}' ({})", user.username, user.id);
        }
        UsersCommand::Passwd { username } => {
            if !oauth_core::users::set_password(users, username, &read_password()?).await? {
                return Err(format!("no user named '{username}'").into());
            }
            println!("password of '{username}' changed");
        }
        UsersCommand::List => {
            for u in users.list_users().await? {
                let state = if u.disabled { "disabled" } else { "active" };
                println!("{}  {}  {state}  created {}", u.id, u.username, u.created_at.to_rfc3339());
            }
        }
    }
    Ok(())
}

/// The first line of standard input: passwords never go on the command line.
fn read_password() -> Result<String, Box<dyn std::error::Error>> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn clients(cli: &Cli, cmd: &ClientsCommand) -> Result<(), Box<dyn std::error::Error>> {
    let stores = open_stores(&cli.database_url).await?;
    match cmd {
        ClientsCommand::Add { name, redirect_uris, confidential, trusted } => {
            let public_url = cli.public_url.clone().unwrap_or_else(|| format!("http://{}", cli.listen));
            let settings = Settings { public_url, redirect_schemes: cli.redirect_schemes.clone() };
            let app = build(&settings, stores).await?;
            let uris = redirect_uris
                .iter()
                .map(|u| oauth_core::types::RedirectUri::parse(u))
                .collect::<Result<Vec<_>, _>>()?;
            let mut spec = oauth_core::server::NewClient::new(name.clone(), uris);
            if *confidential {
                spec = spec.confidential();
            }
            if *trusted {
                spec = spec.trusted();
            }
            let created = app.server.create_client(spec).await?;
            println!("client_id: {}", created.client.id);
            if let Some(secret) = &created.secret {
                println!("client_secret: {}   (shown once; stored only as a hash)", secret.secret());
            }
        }
        ClientsCommand::List => {
            for c in stores.clients.list_clients().await? {
                println!(
                    "{}  {}  {}  {:?}  redirect URIs: {}",
                    c.id,
                    c.display_name(),
                    c.auth_method.as_str(),
                    c.origin,
                    c.redirect_uri_list()
                );
            }
        }
    }
    Ok(())
}

/// `90s`, `30m`, `1h`, `2d`.
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("'{s}' is not an age like 90s, 30m, 1h or 2d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{s}' is not an age like 90s, 30m, 1h or 2d")),
    };
    Ok(std::time::Duration::from_secs(n.saturating_mul(secs)))
}

async fn open_stores(url: &str) -> Result<Stores, Box<dyn std::error::Error>> {
    if url == "memory" {
        return Ok(oauth_store_memory::MemoryStore::new().into_stores());
    }
    // SQLite creates the file but not its directory.
    if let Some(path) = url.strip_prefix("sqlite://").map(|rest| rest.split('?').next().unwrap_or_default())
        && let Some(dir) = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(oauth_store_sql::SqlStore::connect(url).await?.into_stores())
}
