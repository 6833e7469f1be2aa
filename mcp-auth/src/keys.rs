//! `keys …`: the signing keys, and a rotation that every running server picks up.

use clap::Subcommand;
use oauth_core::Operator;

use crate::CliError;

/// `keys …`
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum KeysCommand {
    /// Lists the signing keys, newest first: which one signs, which are retired (still
    /// published, so that the tokens they signed verify until they expire).
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Generates a new signing key and retires the current one. Every running server on this
    /// database signs with the new key within a second; tokens signed before keep verifying.
    Rotate,
}

pub(crate) async fn keys(op: &Operator, cmd: &KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::List { json } => {
            let keys = op.signing_keys().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(());
            }
            for k in keys {
                let state = match k.retired_at {
                    None => "signing".to_owned(),
                    Some(at) => format!("retired {}", at.to_rfc3339()),
                };
                let sealed = if k.sealed { "sealed" } else { "in clear" };
                println!("{}  {}  created {}  {state}  {sealed}", k.kid, k.algorithm, k.created_at.to_rfc3339());
            }
        }
        KeysCommand::Rotate => {
            let key = op.rotate_signing_key().await?;
            println!(
                "new signing key {} ({}); the previous one is retired and still verifies the tokens it signed. \
                 Running servers on this database sign with the new key within a second.",
                key.kid, key.algorithm
            );
        }
    }
    Ok(())
}
