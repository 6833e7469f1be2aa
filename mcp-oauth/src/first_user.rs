//! The first user of a new server, with a generated password that only its owner can read.

use std::io::Write as _;
use std::path::Path;

use oauth_core::{AuthorizationServer, Error};

/// Characters of a generated first password (about 120 bits).
const PASSWORD_LEN: usize = 20;

/// Creates `username` with a generated password written to `path` when the server has no user.
pub(crate) async fn create(server: &AuthorizationServer, username: &str, path: &Path) -> Result<bool, Error> {
    let operator = server.operator();
    let users = &operator.stores().users;
    if !users.list_users().await?.is_empty() {
        return Ok(false);
    }
    let generated = oauth_core::ClientSecret::generate();
    let password = &generated.secret()[..PASSWORD_LEN];
    // The file first: a user whose password nobody can read would lock the operator out.
    write_secret_file(path, password)
        .map_err(|e| Error::Config(format!("cannot write the first password to {}: {e}", path.display())))?;
    oauth_core::create_user(users.as_ref(), username, password, server.now()).await?;
    Ok(true)
}

/// Writes `secret` and a newline to `path`, readable and writable by its owner only (0600,
/// tightened first when the file already exists), creating the directory when it is missing.
/// For a generated password or token that must never reach argv, logs or the terminal of
/// someone else.
pub fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // An older file keeps its mode on open: tighten it before writing.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    writeln!(file, "{secret}")
}
