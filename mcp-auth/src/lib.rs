#![doc = include_str!("../README.md")]

pub mod check;
pub mod clients;
mod keys;
pub mod replay;

use std::io::Read as _;
use std::time::Duration;

pub use crate::keys::KeysCommand;
use clap::Subcommand;
use oauth_core::NewClient;
use oauth_core::create_user;
use oauth_core::without_connected;
use oauth_core::{ClientId, RedirectUri};
use oauth_core::{ClientUpdate, Operator};
use oauth_core::{Clock as _, Stores, SystemClock};

/// Everything that can go wrong in a command: the message says what, and what to do.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

/// The operator's commands. A program embeds them in its own command line with
/// `#[command(flatten)]`, as the example server does.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Why did a connection not come up? Each client's connection attempts, the step where each
    /// one stopped, the exact reason and the fix, from the flow events in the database.
    Diagnose {
        /// Only this client (every attempt, connected ones included).
        #[arg(long)]
        client_id: Option<String>,
        /// How far back to look: `90s`, `30m`, `1h`, `2d`.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Also list the attempts that connected (without a client id, only the others are).
        #[arg(long)]
        all: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Checks a live deployment from outside, as a client discovers it: the 401 challenge, the
    /// protected-resource and authorization-server metadata, the keys, CORS. With `--clients`,
    /// then replays each named client's discovery, registration and authorization request up
    /// to the sign-in page. Exits non-zero when a client would fail.
    Check {
        /// The public URL clients are given: the origin (the MCP endpoint is then
        /// `<origin>/mcp`) or the MCP endpoint's URL itself.
        #[arg(long)]
        public_url: String,
        /// Clients to replay, comma-separated: claude, chatgpt, claude-code, cursor, vscode,
        /// inspector, codex, gemini, goose, or all. Each registers as `mcp-auth check (<name>)`;
        /// the report says how each registration was removed, or how to remove it.
        #[arg(long, value_delimiter = ',', value_parser = clients::parse_name)]
        clients: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Users of the sign-in page.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Registered clients; pre-registration (for example the id and secret typed into
    /// Claude's "Advanced settings").
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// The signing keys: list, and rotate.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `users …`
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum UsersCommand {
    /// Adds a user; the password is read from the first line of standard input.
    Add {
        /// The username.
        username: String,
    },
    /// Sets a user's password, read from the first line of standard input, and signs the user
    /// out of every browser.
    Passwd {
        /// The username.
        username: String,
    },
    /// Lists the users.
    List,
    /// Removes a user, signs it out of every browser and revokes every authorization it
    /// approved.
    Remove {
        /// The username.
        username: String,
    },
    /// Disables a user: it cannot sign in, is signed out of every browser, and every
    /// authorization it approved is revoked.
    Disable {
        /// The username.
        username: String,
    },
    /// Lets a disabled user sign in again.
    Enable {
        /// The username.
        username: String,
    },
}

/// `clients …`
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum ClientsCommand {
    /// Lists the clients.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Only dynamically registered and metadata-document clients unused (no token request,
        /// else since registration) for `--older-than`: the ones the sweep collects.
        #[arg(long)]
        unused: bool,
        /// With `--unused`: how long unused (`30d`, `12h`, `90m`). Default 30 days, the
        /// server's default retention.
        #[arg(long, requires = "unused", default_value = "30d")]
        older_than: String,
    },
    /// A client's metadata, redirect URIs and what became of its codes.
    Show {
        /// The client id.
        id: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Registers a client and prints its id and, for a confidential client, its secret (once).
    Add {
        /// The name shown on the consent page.
        #[arg(long)]
        name: String,
        /// A redirect URI (repeat for several); none for `--machine` or `--introspection` alone.
        #[arg(long = "redirect-uri", required_unless_present_any = ["machine", "introspection", "enterprise"])]
        redirect_uris: Vec<String>,
        /// Give the client a secret (client_secret_post or client_secret_basic).
        #[arg(long)]
        confidential: bool,
        /// Skip the consent page for this client.
        #[arg(long)]
        trusted: bool,
        /// A machine client: client_credentials only, tokens with no user behind them
        /// (confidential; the server must allow the grant and the resource accept machines).
        #[arg(long, conflicts_with_all = ["redirect_uris", "trusted"])]
        machine: bool,
        /// A resource server that may introspect any access token (RFC 7662); confidential.
        #[arg(long)]
        introspection: bool,
        /// May present enterprise IdPs' identity assertions with the jwt-bearer grant
        /// (Enterprise-Managed Authorization); confidential. List its id under the IdP's
        /// `clients` in the server's enterprise IdPs file. With redirect URIs it may also
        /// sign people in on this server's page.
        #[arg(long, conflicts_with = "machine")]
        enterprise: bool,
        /// Authenticate with private_key_jwt (RFC 7523) against the public keys in this JWK
        /// set file, instead of a secret.
        #[arg(long, value_name = "FILE", conflicts_with = "jwks_uri")]
        jwks_file: Option<std::path::PathBuf>,
        /// Authenticate with private_key_jwt against the keys the client publishes at this
        /// https URL, instead of a secret.
        #[arg(long, value_name = "URL")]
        jwks_uri: Option<String>,
    },
    /// Changes a client.
    Update {
        /// The client id.
        id: String,
        /// Replaces the redirect URIs (comma-separated, or repeat the flag).
        #[arg(long = "redirect-uris", value_delimiter = ',')]
        redirect_uris: Vec<String>,
        /// Skip the consent page.
        #[arg(long, conflicts_with = "untrusted")]
        trusted: bool,
        /// Show the consent page.
        #[arg(long)]
        untrusted: bool,
        /// Accept the client again.
        #[arg(long, conflicts_with = "inactive")]
        active: bool,
        /// Refuse the client everywhere and revoke its authorizations.
        #[arg(long)]
        inactive: bool,
    },
    /// Gives a confidential client a new secret, printed once; the old one stops working.
    RotateSecret {
        /// The client id.
        id: String,
    },
    /// Revokes every authorization of a client and deletes it.
    Remove {
        /// The client id.
        id: String,
    },
}

/// Runs `command` on the database at `database_url`, printing to standard output. `Ok(false)`
/// means the command ran and found a problem (`check`), for a non-zero exit.
///
/// `key_encryption` is the server's key-encryption key, when it has one: the commands that
/// create or rotate a client secret read the secret-hash pepper from the key store, which that
/// key seals. Without it they fail and say which key to give, and never write a secret that
/// the server could not check.
pub async fn run(
    command: &Command,
    database_url: &str,
    key_encryption: Option<&oauth_core::KeyEncryption>,
) -> Result<bool, CliError> {
    let open = || async {
        Ok::<_, CliError>(oauth_core::KeyEncryption::protect(key_encryption, open_database(database_url).await?))
    };
    match command {
        Command::Check { public_url, clients, json } => {
            let profiles = if clients.is_empty() { Vec::new() } else { clients::select(clients)? };
            let report = check::check_with_clients(public_url, &profiles).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(report.passed())
        }
        Command::Diagnose { client_id, since, all, json } => {
            let stores = open().await?;
            diagnose(&stores, client_id.as_deref(), since, *all, *json).await?;
            Ok(true)
        }
        Command::Users(cmd) => {
            users(&Operator::new(open().await?), cmd).await?;
            Ok(true)
        }
        Command::Clients(cmd) => {
            clients(&Operator::new(open().await?), cmd).await?;
            Ok(true)
        }
        Command::Keys(cmd) => {
            keys::keys(&Operator::new(open().await?), cmd).await?;
            Ok(true)
        }
    }
}

/// Opens the server's database, `sqlite://…?mode=rwc` (the file and its directory created when
/// missing) or `postgres://…`, and brings its schema up to date.
pub async fn open_database(url: &str) -> Result<Stores, CliError> {
    open_database_with(url, &oauth_store_sql::SqlStoreOptions::default()).await
}

/// [`open_database`] with the pool sized and timed by `options`.
pub async fn open_database_with(url: &str, options: &oauth_store_sql::SqlStoreOptions) -> Result<Stores, CliError> {
    Ok(oauth_store_sql::SqlStore::connect_with(url, options).await?.into_stores())
}

/// An age on the command line that is not one: see [`parse_age`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgeError(String);

impl std::fmt::Display for AgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' is not an age like 90s, 30m, 1h or 2d", self.0)
    }
}

impl std::error::Error for AgeError {}

/// Parses an age: `90s`, `30m`, `1h`, `2d` (a bare number is hours).
pub fn parse_age(s: &str) -> Result<Duration, AgeError> {
    let bad = || AgeError(s.chars().take(64).collect());
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" | "" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

async fn diagnose(stores: &Stores, client: Option<&str>, since: &str, all: bool, json: bool) -> Result<(), CliError> {
    let client = client.map(ClientId::parse).transpose()?;
    let since = SystemClock.now().minus(parse_age(since)?);
    let mut report = oauth_core::diagnose(stores.events.as_ref(), client.as_ref(), since).await?;
    let hidden = if all || client.is_some() { 0 } else { without_connected(&mut report) };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if report.is_empty() {
        println!("no failed or unfinished connection attempts in that period");
    }
    for d in &report {
        print!("{}", d.render());
    }
    if hidden > 0 {
        println!("({hidden} attempt(s) that connected are not shown; --all shows them)");
    }
    Ok(())
}

async fn users(op: &Operator, cmd: &UsersCommand) -> Result<(), CliError> {
    let users = op.stores().users.as_ref();
    match cmd {
        UsersCommand::Add { username } => {
            let user = create_user(users, username, &read_password()?, SystemClock.now()).await?;
            println!("added user '{}' ({})", user.username, user.id);
        }
        UsersCommand::Passwd { username } => {
            if !op.set_password(username, &read_password()?).await? {
                return Err(format!("no user named '{username}'").into());
            }
            println!("password of '{username}' changed; it is signed out of every browser");
        }
        UsersCommand::List => {
            for u in users.list_users().await? {
                let state = if u.disabled { "disabled" } else { "active" };
                println!("{}  {}  {state}  created {}", u.id, u.username, u.created_at.to_rfc3339());
            }
        }
        UsersCommand::Remove { username } => {
            if !op.remove_user(username).await? {
                return Err(format!("no user named '{username}'").into());
            }
            println!(
                "removed user '{username}'; it is signed out of every browser and its authorizations are revoked: \
                 refresh tokens stop working now, and servers that follow this database's revocation feed refuse \
                 its access tokens within seconds"
            );
        }
        UsersCommand::Disable { username } => {
            if !op.disable_user(username).await? {
                return Err(format!("no user named '{username}'").into());
            }
            println!(
                "disabled user '{username}'; it is signed out of every browser and its authorizations are revoked: \
                 refresh tokens stop working now, and servers that follow this database's revocation feed refuse \
                 its access tokens within seconds"
            );
        }
        UsersCommand::Enable { username } => {
            if !op.enable_user(username).await? {
                return Err(format!("no user named '{username}'").into());
            }
            println!("enabled user '{username}'; it can sign in again");
        }
    }
    Ok(())
}

/// The first line of standard input, at most 4 KiB: passwords never go on the command line.
fn read_password() -> Result<String, CliError> {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(std::io::stdin().take(4096)), &mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn clients(op: &Operator, cmd: &ClientsCommand) -> Result<(), CliError> {
    match cmd {
        ClientsCommand::List { json, unused, older_than } => {
            list_clients(op, *json, unused.then_some(older_than)).await?
        }
        ClientsCommand::Show { id, json } => {
            let id = ClientId::parse(id)?;
            let report = op.client_report(&id).await?.ok_or_else(|| format!("there is no client '{id}'"))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
        }
        ClientsCommand::Add {
            name,
            redirect_uris,
            confidential,
            trusted,
            machine,
            introspection,
            enterprise,
            jwks_file,
            jwks_uri,
        } => {
            let kind = ClientKind {
                confidential: *confidential,
                trusted: *trusted,
                machine: *machine,
                introspection: *introspection,
                enterprise: *enterprise,
            };
            let keys = match (jwks_file, jwks_uri) {
                (Some(path), _) => {
                    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    let set = oauth_core::Jwks::from_json(&bytes)
                        .map_err(|e| format!("{} is not a JWK set: {e}", path.display()))?;
                    Some(PublicKeys::Inline(set))
                }
                (None, Some(uri)) => Some(PublicKeys::At(uri.clone())),
                (None, None) => None,
            };
            add_client(op, name, redirect_uris, kind, keys).await?;
        }
        ClientsCommand::Update { id, redirect_uris, trusted, untrusted, active, inactive } => {
            let mut update = ClientUpdate::default();
            if !redirect_uris.is_empty() {
                update = update.redirect_uris(parse_redirects(redirect_uris)?);
            }
            if *trusted || *untrusted {
                update = update.trusted(*trusted);
            }
            if *active || *inactive {
                update = update.active(*active);
            }
            let c = op.update_client(&ClientId::parse(id)?, update).await?;
            let uris = c.redirect_uri_list();
            println!("client {} updated: trusted {}, active {}, redirect URIs: {uris}", c.id, c.trusted, c.active);
        }
        ClientsCommand::RotateSecret { id } => {
            let secret = op.rotate_client_secret(&ClientId::parse(id)?).await?;
            println!("client_secret: {}   (shown once; the old secret no longer works)", secret.secret());
        }
        ClientsCommand::Remove { id } => {
            let id = ClientId::parse(id)?;
            if !op.remove_client(&id).await? {
                return Err(format!("there is no client '{id}'").into());
            }
            println!(
                "removed client {id}; its authorizations are revoked: its refresh tokens stop working now, and \
                 servers that follow this database's revocation feed refuse its access tokens within seconds"
            );
        }
    }
    Ok(())
}

/// What `clients add` was told the client is.
#[derive(Debug, Clone, Copy)]
struct ClientKind {
    confidential: bool,
    trusted: bool,
    machine: bool,
    introspection: bool,
    enterprise: bool,
}

/// The public keys a `private_key_jwt` client authenticates with.
#[derive(Debug)]
enum PublicKeys {
    Inline(oauth_core::Jwks),
    At(String),
}

/// `clients add`: prints the id and, once, the secret of a confidential client.
async fn add_client(
    op: &Operator,
    name: &str,
    redirect_uris: &[String],
    kind: ClientKind,
    keys: Option<PublicKeys>,
) -> Result<(), CliError> {
    let mut spec = if kind.machine {
        NewClient::machine(name.to_owned())
    } else {
        NewClient::new(name.to_owned(), parse_redirects(redirect_uris)?)
    };
    if kind.confidential || kind.introspection || kind.enterprise {
        spec = spec.confidential();
    }
    if kind.enterprise {
        let mut grants = vec![oauth_core::GrantType::JwtBearer];
        if !redirect_uris.is_empty() {
            grants.extend([oauth_core::GrantType::AuthorizationCode, oauth_core::GrantType::RefreshToken]);
        }
        spec = spec.with_grant_types(grants);
    }
    if kind.introspection {
        spec = spec.introspection();
    }
    if kind.trusted {
        spec = spec.trusted();
    }
    spec = match keys {
        Some(PublicKeys::Inline(set)) => spec.with_jwks(set),
        Some(PublicKeys::At(uri)) => spec.with_jwks_uri(uri),
        None => spec,
    };
    let created = op.create_client(spec).await?;
    println!("client_id: {}", created.client.id);
    if created.client.auth_method == oauth_core::TokenEndpointAuthMethod::PrivateKeyJwt {
        println!("token_endpoint_auth_method: private_key_jwt   (no secret: the client signs assertions with its key)");
    }
    if let Some(secret) = &created.secret {
        println!("client_secret: {}   (shown once; stored only as a hash)", secret.secret());
    }
    Ok(())
}

/// `clients list`: every client, or with `unused_for` only the self-registered ones unused
/// (no token request since registration or last use) for that long, which the sweep collects.
async fn list_clients(op: &Operator, json: bool, unused_for: Option<&String>) -> Result<(), CliError> {
    let mut all = op.stores().clients.list_clients().await?;
    if let Some(age) = unused_for {
        let before = SystemClock.now().minus(parse_age(age)?);
        all.retain(|c| {
            c.origin != oauth_core::ClientOrigin::PreRegistered && c.last_used_at.unwrap_or(c.created_at) < before
        });
    }
    if json {
        let mut reports = Vec::with_capacity(all.len());
        for c in &all {
            reports.extend(op.client_report(&c.id).await?);
        }
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    for c in all {
        let flags: Vec<&str> = [
            (c.trusted, "trusted"),
            (c.machine, "machine"),
            (c.introspection, "introspection"),
            (!c.active, "INACTIVE"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        println!(
            "{}  {}  {}  {:?}  {}  last used {}  redirect URIs: {}",
            c.id,
            c.display_name(),
            c.auth_method.as_str(),
            c.origin,
            if flags.is_empty() { "-".to_owned() } else { flags.join(",") },
            c.last_used_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into()),
            c.redirect_uri_list()
        );
    }
    Ok(())
}

fn parse_redirects(uris: &[String]) -> Result<Vec<RedirectUri>, CliError> {
    Ok(uris.iter().map(|u| RedirectUri::parse(u.trim())).collect::<Result<Vec<_>, _>>()?)
}

/// Secrets given on the command line are visible to every user of the machine (`ps`,
/// `/proc/<pid>/cmdline`) and land in shell histories. Returns the error that refuses `flag`
/// when `matches` says its value came from the command line, naming the environment variable
/// and file flag to use instead.
pub fn refuse_secret_on_command_line(
    matches: &clap::ArgMatches,
    id: &str,
    flag: &str,
    env: &str,
    file_flag: &str,
) -> Result<(), CliError> {
    if matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
        return Err(format!(
            "{flag} on the command line is visible to every user of this machine (ps); \
             set {env} in the environment or put the value in a file named by {file_flag}"
        )
        .into());
    }
    Ok(())
}

/// The database URL to use: `url` (from `--database-url` or `DATABASE_URL`), or the contents of
/// `file` (`--database-url-file`). A URL with a password is refused when it came from the
/// command line (`from_command_line`), where every user of the machine can read it.
pub fn resolve_database_url(
    url: String,
    from_command_line: bool,
    file: Option<&std::path::Path>,
) -> Result<String, CliError> {
    if let Some(file) = file {
        return read_secret_file(file);
    }
    if from_command_line && database_url_has_password(&url) {
        return Err("the password in --database-url is visible to every user of this machine (ps); \
                    set DATABASE_URL in the environment or put the URL in a file named by --database-url-file"
            .into());
    }
    Ok(url)
}

/// Whether a database URL carries a password: `scheme://user:password@host…`, or a
/// `password=` query parameter.
pub fn database_url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let query = rest.split_once('?').map(|(_, q)| q).unwrap_or_default();
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
        || query.split('&').any(|pair| pair.to_ascii_lowercase().starts_with("password="))
}

/// A secret read from `path`: its contents, at most 64 KiB, without the final line break.
/// Warns when the file can be read by other users.
pub fn read_secret_file(path: &std::path::Path) -> Result<String, CliError> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    #[cfg(unix)]
    if let Ok(meta) = file.metadata()
        && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "a secret file is readable by other users; chmod 600 it");
    }
    let mut text = String::new();
    file.take(64 * 1024).read_to_string(&mut text).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()).into());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_age("2"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_age("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_age("soon").is_err());
        assert!(parse_age("5w").is_err());
    }

    #[test]
    fn passwords_in_database_urls_are_recognised() {
        assert!(database_url_has_password("postgres://app:s3cret@db:5432/oauth"));
        assert!(database_url_has_password("postgresql://app:p%40ss@db/oauth?sslmode=disable"));
        assert!(!database_url_has_password("postgres://app@db/oauth"));
        assert!(database_url_has_password("postgres://db/oauth?user=app&password=x"));
        assert!(!database_url_has_password("sqlite://data/notes.db?mode=rwc"));
        assert!(!database_url_has_password("memory"));
        let err = resolve_database_url("postgres://a:b@h/d".into(), true, None).unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL") && !err.contains("a:b"), "{err}");
        assert!(resolve_database_url("postgres://a:b@h/d".into(), false, None).is_ok(), "from the environment");
    }
}
