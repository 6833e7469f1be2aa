//! `notes-server`: run the example MCP server with its embedded authorization server, or, with
//! `--external-issuer`, behind an external one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use mcp_oauth::AdminToken;
use notes_server::{External, MCP_PATH, Settings, build, build_external};
use oauth_core::KnownClient;
use oauth_core::Stores;
use oauth_core::create_user;

/// An MCP server with per-user notes, protected by OAuth 2.1.
#[derive(Debug, clap::Parser)]
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
    /// A URL with a password belongs in `DATABASE_URL` or a file, never on the command line.
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
    database_url_file: Option<PathBuf>,
    /// Private-use redirect URI schemes to accept. Default: `cursor`, so that Cursor connects
    /// out of the box; any app on the user's machine can claim a scheme, so list only the
    /// clients you expect.
    #[arg(long = "redirect-scheme", env = "NOTES_REDIRECT_SCHEMES", value_delimiter = ',', default_value = "cursor")]
    redirect_schemes: Vec<String>,
    /// Password of the first user (`admin`) on a fresh database, from the environment
    /// (refused on the command line). When neither it nor `--admin-password-file` is given,
    /// one is generated and written to `--initial-password-file`.
    #[arg(long, env = "NOTES_ADMIN_PASSWORD", hide_env_values = true, hide = true)]
    admin_password: Option<String>,
    /// A file holding the first user's password.
    #[arg(long, env = "NOTES_ADMIN_PASSWORD_FILE", conflicts_with = "admin_password")]
    admin_password_file: Option<PathBuf>,
    /// Where a generated first password is written (mode 0600). It is printed too, only when
    /// standard output is a terminal.
    #[arg(long, env = "NOTES_INITIAL_PASSWORD_FILE", default_value = "data/initial-admin-password")]
    initial_password_file: PathBuf,
    /// Clients you expect to connect (claude, chatgpt, claude-code, cursor, vscode,
    /// inspector): the server refuses to start with a configuration that would lock one out.
    #[arg(long = "expect-client", env = "NOTES_EXPECT_CLIENTS", value_delimiter = ',', value_parser = parse_known_client)]
    expected_clients: Vec<KnownClient>,
    /// Turns on the admin endpoint (`/admin/diagnose`, `/admin/clients/{id}`) behind this
    /// bearer secret (at least 32 characters), from the environment (refused on the command
    /// line). Off when neither it nor `--admin-token-file` is set.
    #[arg(long, env = "NOTES_ADMIN_TOKEN", hide_env_values = true, hide = true)]
    admin_token: Option<String>,
    /// A file holding the admin endpoint's bearer secret.
    #[arg(long, env = "NOTES_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// Seals the signing keys in the database (AES-256-GCM) with this 32-byte key, as 64 hex
    /// digits or base64 (`openssl rand -base64 32`), from the environment (refused on the
    /// command line). Keep it outside the database: whoever reads the keys can mint tokens.
    #[arg(long, env = "NOTES_KEY_ENCRYPTION_KEY", hide_env_values = true, hide = true)]
    key_encryption_key: Option<String>,
    /// A file holding the key-encryption key.
    #[arg(long, env = "NOTES_KEY_ENCRYPTION_KEY_FILE", conflicts_with = "key_encryption_key")]
    key_encryption_key_file: Option<PathBuf>,
    /// Seconds a connection may take to send a request's head (and stay idle between
    /// requests) before it is closed.
    #[arg(long, env = "NOTES_HEADER_READ_TIMEOUT", default_value_t = 10)]
    header_read_timeout: u64,
    /// Connections served at once; more wait. Keep it below the file-descriptor limit.
    #[arg(long, env = "NOTES_MAX_CONNECTIONS", default_value_t = 512)]
    max_connections: usize,
    /// Reverse proxies or tunnels (IP addresses or CIDR ranges such as 10.0.0.0/8) whose
    /// `X-Forwarded-For` the per-address rate limits believe. Without one they key on the
    /// connecting address, which behind a proxy is the proxy's for every client.
    #[arg(long = "trusted-proxy", env = "NOTES_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<mcp_oauth::IpRange>,
    /// Accept clients identified by a Client ID Metadata Document (an https `client_id` URL
    /// that this server fetches, public addresses only), as Claude Code and ChatGPT prefer.
    #[arg(long, env = "NOTES_METADATA_DOCUMENTS", default_value_t = true, action = clap::ArgAction::Set)]
    metadata_documents: bool,
    /// Accept private_key_jwt client authentication (RFC 7523): clients that sign assertions
    /// with their own keys, as ChatGPT's metadata documents ask to. Off: such documents that
    /// also list `none` connect as public clients.
    #[arg(long, env = "NOTES_PRIVATE_KEY_JWT", default_value_t = true, action = clap::ArgAction::Set)]
    private_key_jwt: bool,
    /// Let machine clients (`clients add --machine`) obtain tokens with client_credentials and
    /// call the tools with them, with no person signed in. Off by default.
    #[arg(long, env = "NOTES_MACHINE_CLIENTS", default_value_t = false, action = clap::ArgAction::Set)]
    machine_clients: bool,
    /// Most database connections this process opens. Every replica counts against
    /// PostgreSQL's own `max_connections` (100 by default).
    #[arg(long, env = "NOTES_DB_MAX_CONNECTIONS", default_value_t = 10)]
    db_max_connections: u32,
    /// Seconds a request waits for a free database connection (or for an unreachable
    /// database) before it fails with `server_error`.
    #[arg(long, env = "NOTES_DB_ACQUIRE_TIMEOUT", default_value_t = 5)]
    db_acquire_timeout: u64,
    /// PostgreSQL only: seconds a statement may run before the database cancels it; 0 leaves
    /// the database's own setting.
    #[arg(long, env = "NOTES_DB_STATEMENT_TIMEOUT", default_value_t = 30)]
    db_statement_timeout: u64,
    /// Rotates the signing key once it is this many hours old, on every replica at once;
    /// 0 (the default) leaves rotation to the operator (`keys rotate`).
    #[arg(long, env = "NOTES_ROTATE_SIGNING_KEY_HOURS", default_value_t = 0)]
    rotate_signing_key_hours: u64,
    /// Share the rate limits, the sign-in throttle and the metadata-document fetch budget with
    /// every replica through the database. Default: on with PostgreSQL, off otherwise.
    #[arg(long, env = "NOTES_SHARED_LIMITS", action = clap::ArgAction::Set)]
    shared_limits: Option<bool>,
    /// Prometheus metrics at `GET /metrics`, behind the admin token (NOTES_ADMIN_TOKEN); no
    /// admin token, no endpoint.
    #[arg(long, env = "NOTES_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    metrics: bool,
    /// Enterprise-Managed Authorization: a JSON file of the enterprise IdPs whose identity
    /// assertions sign people in (`[{"issuer", "jwks_uri"?, "clients", "link_by_email"?}]`;
    /// without `jwks_uri` the keys are found from the IdP's metadata at startup). Clients
    /// that present them are created with `clients add --enterprise`.
    #[arg(long, env = "NOTES_ENTERPRISE_IDPS_FILE", value_name = "FILE")]
    enterprise_idps: Option<std::path::PathBuf>,
    /// Sign people in through an upstream identity provider, beside the local passwords:
    /// `google`, `github`, `entra:<tenant id>` (`entra:organizations` for any work account),
    /// `okta:<issuer URL>`, `auth0:<domain>`, `keycloak:<base URL>/realms/<realm>`, or any
    /// OpenID provider's issuer URL. Its client id and secret come from NOTES_UPSTREAM_CLIENT_ID
    /// and NOTES_UPSTREAM_CLIENT_SECRET (or --upstream-client-secret-file); register
    /// `<public URL>/authorize/upstream/<id>/callback` there. `--upstream-oidc <issuer>` is
    /// the same flag.
    #[arg(long, visible_alias = "upstream-oidc", env = "NOTES_UPSTREAM", value_name = "PROVIDER")]
    upstream: Option<String>,
    /// This server's client id at the upstream provider.
    #[arg(long, env = "NOTES_UPSTREAM_CLIENT_ID", requires = "upstream")]
    upstream_client_id: Option<String>,
    /// This server's client secret at the upstream provider, from the environment (refused on
    /// the command line).
    #[arg(long, env = "NOTES_UPSTREAM_CLIENT_SECRET", hide_env_values = true, hide = true)]
    upstream_client_secret: Option<String>,
    /// A file holding the upstream client secret.
    #[arg(long, env = "NOTES_UPSTREAM_CLIENT_SECRET_FILE", conflicts_with = "upstream_client_secret")]
    upstream_client_secret_file: Option<PathBuf>,
    /// Only people with a verified email in these domains may sign in upstream.
    #[arg(long = "upstream-allow-domain", env = "NOTES_UPSTREAM_ALLOW_DOMAINS", value_delimiter = ',')]
    upstream_allow_domains: Vec<String>,
    /// Auth0 only: the API identifier the upstream access token is for (`audience`).
    #[arg(long, env = "NOTES_UPSTREAM_AUDIENCE")]
    upstream_audience: Option<String>,
    /// The upstream-token vault's key (32 bytes, hex or base64: `openssl rand -base64 32`),
    /// from the environment (refused on the command line): the providers' tokens are kept
    /// sealed with it, for the `upstream_profile` tool. Keep it outside the database. Without
    /// it they are not kept.
    #[arg(long, env = "NOTES_VAULT_KEY", hide_env_values = true, hide = true)]
    vault_key: Option<String>,
    /// A file holding the vault key.
    #[arg(long, env = "NOTES_VAULT_KEY_FILE", conflicts_with = "vault_key")]
    vault_key_file: Option<PathBuf>,
    /// Files of older vault keys that still open what they sealed (after a rotation: put
    /// the new key in NOTES_VAULT_KEY and the old one here until its tokens were refreshed).
    #[arg(long = "vault-previous-key-file", env = "NOTES_VAULT_PREVIOUS_KEY_FILES", value_delimiter = ',')]
    vault_previous_key_files: Vec<PathBuf>,
    /// Link a first upstream sign-in to the local user whose username is the verified email.
    #[arg(long, env = "NOTES_UPSTREAM_LINK_EMAIL", default_value_t = false, action = clap::ArgAction::Set)]
    upstream_link_email: bool,
    /// Tokens come from this external authorization server instead of the embedded one: its
    /// issuer, exactly as its metadata states it (Auth0's ends with '/'). No database, no users
    /// and no sign-in pages here; the protected-resource metadata points clients at it, and
    /// its keys are found from its metadata at startup. See docs/external-idps.md.
    #[arg(long, env = "NOTES_EXTERNAL_ISSUER", value_name = "URL")]
    external_issuer: Option<String>,
    /// How the external issuer's tokens are read: `rfc9068` (the strict default), or the
    /// default access tokens of `keycloak`, `entra`, `auth0` or `okta`.
    #[arg(
        long,
        env = "NOTES_EXTERNAL_PRESET",
        default_value = "rfc9068",
        value_parser = clap::builder::PossibleValuesParser::new(mcp_oauth::ISSUER_PRESETS)
    )]
    external_preset: String,
    /// A value the external issuer's tokens may carry in `aud` instead of the MCP URL
    /// (repeatable): an Auth0 API identifier, Entra's application id, a Keycloak client id.
    /// Only values that name this server: each one admits every token issued for it.
    #[arg(long = "external-audience", env = "NOTES_EXTERNAL_AUDIENCES", value_delimiter = ',', value_name = "VALUE")]
    external_audiences: Vec<String>,
    /// Entra: `api://<application id>/`. The tokens' scopes are read with this prefix, and
    /// the prefixed `--external-scope` is what the server requires and advertises: what
    /// clients must ask Entra for, while its tokens carry the bare name.
    #[arg(long, env = "NOTES_EXTERNAL_SCOPE_PREFIX", value_name = "PREFIX")]
    external_scope_prefix: Option<String>,
    /// The scope the tools need, as the external issuer's tokens carry it (before the prefix):
    /// the scope you defined there.
    #[arg(long, env = "NOTES_EXTERNAL_SCOPE", default_value = "mcp:tools", value_name = "SCOPE")]
    external_scope: String,
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
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let secrets = match Secrets::resolve(&cli, &matches) {
        Ok(secrets) => secrets,
        Err(e) => {
            eprintln!("notes-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(cli, secrets).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notes-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The secrets, from the environment or files: never from the command line, where every user
/// of the machine can read them.
struct Secrets {
    database_url: String,
    admin_password: Option<String>,
    admin_token: Option<String>,
    upstream_client_secret: Option<String>,
    vault: Option<oauth_core::upstream::VaultKeys>,
    key_encryption: Option<oauth_core::KeyEncryption>,
}

impl Secrets {
    fn resolve(cli: &Cli, matches: &clap::ArgMatches) -> Result<Self, mcp_auth::CliError> {
        use mcp_auth::refuse_secret_on_command_line as refuse;
        refuse(matches, "admin_password", "--admin-password", "NOTES_ADMIN_PASSWORD", "--admin-password-file")?;
        refuse(matches, "admin_token", "--admin-token", "NOTES_ADMIN_TOKEN", "--admin-token-file")?;
        refuse(
            matches,
            "upstream_client_secret",
            "--upstream-client-secret",
            "NOTES_UPSTREAM_CLIENT_SECRET",
            "--upstream-client-secret-file",
        )?;
        refuse(matches, "vault_key", "--vault-key", "NOTES_VAULT_KEY", "--vault-key-file")?;
        refuse(
            matches,
            "key_encryption_key",
            "--key-encryption-key",
            "NOTES_KEY_ENCRYPTION_KEY",
            "--key-encryption-key-file",
        )?;
        let from_command_line = matches.value_source("database_url") == Some(clap::parser::ValueSource::CommandLine);
        let database_url = mcp_auth::resolve_database_url(
            cli.database_url.clone(),
            from_command_line,
            cli.database_url_file.as_deref(),
        )?;
        let either = |value: &Option<String>, file: &Option<PathBuf>| -> Result<Option<String>, mcp_auth::CliError> {
            match (value, file) {
                (_, Some(path)) => Ok(Some(mcp_auth::read_secret_file(path)?)),
                (value, None) => Ok(value.clone()),
            }
        };
        let key_encryption = either(&cli.key_encryption_key, &cli.key_encryption_key_file)?
            .map(|k| oauth_core::KeyEncryption::parse(&k))
            .transpose()?;
        Ok(Self {
            database_url,
            admin_password: either(&cli.admin_password, &cli.admin_password_file)?,
            admin_token: either(&cli.admin_token, &cli.admin_token_file)?,
            upstream_client_secret: either(&cli.upstream_client_secret, &cli.upstream_client_secret_file)?,
            vault: match either(&cli.vault_key, &cli.vault_key_file)? {
                Some(current) => {
                    let previous = cli
                        .vault_previous_key_files
                        .iter()
                        .map(|p| mcp_auth::read_secret_file(p))
                        .collect::<Result<Vec<_>, _>>()?;
                    let previous: Vec<&str> = previous.iter().map(String::as_str).collect();
                    Some(oauth_core::upstream::VaultKeys::parse(&current, &previous)?)
                }
                None => None,
            },
            key_encryption,
        })
    }
}

async fn run(cli: Cli, secrets: Secrets) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(command) = &cli.command {
        return match mcp_auth::run(command, &secrets.database_url, secrets.key_encryption.as_ref()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the check found problems".into()),
            Err(e) => Err(e.to_string().into()),
        };
    }
    // Bind first, so that `--listen 127.0.0.1:0` yields a real port for the default public URL.
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let bound = listener.local_addr()?;
    let public_url = cli.public_url.clone().unwrap_or_else(|| format!("http://{bound}"));
    if let Some(issuer) = &cli.external_issuer {
        if cli.upstream.is_some() || cli.enterprise_idps.is_some() {
            return Err("--upstream and --enterprise-idps configure the embedded authorization server;                         with --external-issuer, configure sign-in at that server instead"
                .into());
        }
        return run_external(&cli, issuer, listener, public_url).await;
    }
    let external_options = !cli.external_audiences.is_empty()
        || cli.external_scope_prefix.is_some()
        || cli.external_preset != "rfc9068"
        || cli.external_scope != "mcp:tools";
    if external_options {
        return Err("the --external-… options need --external-issuer".into());
    }
    let (stores, sql) = open_stores(&secrets.database_url, &database_options(&cli)).await?;
    let mut settings = Settings::new(public_url.clone());
    settings.redirect_schemes = cli.redirect_schemes.clone();
    settings.expected_clients = cli.expected_clients.clone();
    settings.trusted_proxies = cli.trusted_proxies.clone();
    settings.metadata_documents = cli.metadata_documents;
    settings.private_key_jwt = cli.private_key_jwt;
    settings.machine_clients = cli.machine_clients;
    if let Some(spec) = &cli.upstream {
        let (Some(id), Some(secret)) = (&cli.upstream_client_id, &secrets.upstream_client_secret) else {
            return Err(
                "--upstream needs NOTES_UPSTREAM_CLIENT_ID and NOTES_UPSTREAM_CLIENT_SECRET (or its file)".into()
            );
        };
        let secret = oauth_core::upstream::UpstreamSecret::new(secret.trim());
        let mut provider = notes_server::upstream_provider(spec, id, secret, cli.upstream_audience.as_deref())?;
        provider.allow = oauth_core::upstream::AllowList::default().email_domains(cli.upstream_allow_domains.clone());
        provider.link_by_verified_email = cli.upstream_link_email;
        println!(
            "  sign-in through {}: register {}/authorize/upstream/{}/callback as its redirect URI",
            provider.display_name,
            public_url.trim_end_matches('/'),
            provider.id
        );
        settings.upstreams.push(provider);
        if secrets.vault.is_none() {
            println!("  the provider's tokens are not kept (set NOTES_VAULT_KEY to let tools call it for the person)");
        }
    }
    settings.vault = secrets.vault.clone();
    if let Some(path) = &cli.enterprise_idps {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        settings.enterprise_idps = notes_server::enterprise_idps_from_json(&bytes)?;
    }
    settings.metrics = cli.metrics.then(|| {
        let metrics = mcp_oauth::metrics::Metrics::new();
        match sql {
            Some(store) => metrics.with_pool(move || {
                let (open, idle, max) = store.pool_use();
                mcp_oauth::metrics::PoolUse::new(open, idle, max)
            }),
            None => metrics,
        }
    });
    settings.shared_limits = cli.shared_limits;
    settings.admin_token = secrets.admin_token.as_deref().map(AdminToken::new).transpose()?;
    if secrets.key_encryption.is_none() && secrets.database_url != "memory" {
        tracing::warn!(
            "the signing keys are stored in clear in the database: whoever reads it can mint tokens; \
             set NOTES_KEY_ENCRYPTION_KEY (or --key-encryption-key-file) to seal them"
        );
    }
    settings.key_encryption = secrets.key_encryption.clone();
    settings.rotate_signing_key_every = (cli.rotate_signing_key_hours > 0)
        .then(|| std::time::Duration::from_secs(cli.rotate_signing_key_hours.saturating_mul(3_600)));
    let app = build(&settings, stores).await?;

    let users = app.server.operator().stores().users.clone();
    let first_user = if users.list_users().await?.is_empty() {
        let generated = secrets.admin_password.is_none();
        let password = secrets
            .admin_password
            .clone()
            .unwrap_or_else(|| oauth_core::ClientSecret::generate().secret()[..20].to_owned());
        create_user(users.as_ref(), "admin", &password, app.server.now()).await?;
        Some((password, generated))
    } else {
        None
    };

    println!("notes-server listening on {bound}");
    println!("  MCP server URL (paste into your client): {}{MCP_PATH}", public_url.trim_end_matches('/'));
    match first_user {
        Some((password, true)) => {
            mcp_oauth::write_secret_file(&cli.initial_password_file, &password)
                .map_err(|e| format!("cannot write {}: {e}", cli.initial_password_file.display()))?;
            let path = cli.initial_password_file.display();
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                println!("  sign in as: admin / {password}   (shown once; stored only as a hash; also in {path})");
            } else {
                println!(
                    "  sign in as: admin, with the password in {path} (mode 0600; delete it once you have signed in)"
                );
            }
        }
        Some((_, false)) => println!("  sign in as: admin, with the password you gave"),
        None => println!("  sign in with an existing user of this database (add one: notes-server users add NAME)"),
    }
    serve(&cli, listener, app.router).await
}

/// The server behind the external authorization server `issuer`.
async fn run_external(
    cli: &Cli,
    issuer: &str,
    listener: tokio::net::TcpListener,
    public_url: String,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut profile = mcp_oauth::IssuerProfile::named(&cli.external_preset)
        .ok_or_else(|| format!("unknown preset '{}'", cli.external_preset))?;
    for audience in &cli.external_audiences {
        profile = profile.with_audience(audience);
    }
    let prefix = cli.external_scope_prefix.clone().unwrap_or_default();
    if !prefix.is_empty() {
        profile = profile.with_scope_prefix(&prefix);
    }
    let scope = oauth_core::ScopeSet::parse(&format!("{prefix}{}", cli.external_scope))?;
    let mut settings = Settings::new(public_url.clone());
    settings.trusted_proxies = cli.trusted_proxies.clone();
    settings.machine_clients = cli.machine_clients;
    let name = profile.name();
    let external = External { issuer: issuer.to_owned(), profile, scope: scope.clone() };
    let router = build_external(&settings, &external).await?;
    println!("notes-server listening on {}", listener.local_addr()?);
    println!("  MCP server URL (paste into your client): {}{MCP_PATH}", public_url.trim_end_matches('/'));
    println!("  tokens from {issuer} ({name} profile), scope {scope}: sign in there");
    serve(cli, listener, router).await
}

/// Serves `router` until Ctrl-C.
async fn serve(
    cli: &Cli,
    listener: tokio::net::TcpListener,
    router: axum::Router,
) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // A header-read timeout and a connection cap: a client that sends half a request cannot
    // hold its connection (and a file descriptor) for ever.
    let limits = mcp_oauth::ServeConfig::default()
        .with_header_read_timeout(std::time::Duration::from_secs(cli.header_read_timeout.max(1)))
        .with_max_connections(cli.max_connections);
    mcp_oauth::serve_with(listener, router, limits, shutdown).await?;
    Ok(())
}

fn database_options(cli: &Cli) -> oauth_store_sql::SqlStoreOptions {
    use std::time::Duration;
    oauth_store_sql::SqlStoreOptions::default()
        .with_max_connections(cli.db_max_connections.max(1))
        .with_acquire_timeout(Duration::from_secs(cli.db_acquire_timeout.max(1)))
        .with_statement_timeout((cli.db_statement_timeout > 0).then(|| Duration::from_secs(cli.db_statement_timeout)))
}

/// The stores, and the SQL store behind them (for the pool metrics) unless in memory.
async fn open_stores(
    url: &str,
    options: &oauth_store_sql::SqlStoreOptions,
) -> Result<(Stores, Option<oauth_store_sql::SqlStore>), Box<dyn std::error::Error>> {
    if url == "memory" {
        return Ok((oauth_store_memory::MemoryStore::new().into_stores(), None));
    }
    let store = oauth_store_sql::SqlStore::connect_with(url, options)
        .await
        .map_err(|e| mcp_auth::CliError::from(e).to_string())?;
    Ok((store.clone().into_stores(), Some(store)))
}
