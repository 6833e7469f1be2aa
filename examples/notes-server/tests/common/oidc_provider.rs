//! node-oidc-provider (`interop/oidc-provider`, pinned) on a loopback port: the certified
//! OpenID provider, as an external authorization server or an upstream identity provider.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The running provider, killed on drop.
pub struct Provider {
    child: Child,
    /// Its issuer, `http://127.0.0.1:<port>`.
    pub issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `provider.mjs` with `env` (its `OIDC_*` settings); fails loudly when the package is
/// not installed.
pub fn start(env: &[(&str, &str)]) -> Provider {
    let dir = super::repo_root().join("interop/oidc-provider");
    assert!(
        dir.join("node_modules/oidc-provider/package.json").exists(),
        "interop/oidc-provider/node_modules is missing: run `bash interop/oidc-provider/install.sh`"
    );
    let mut child = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node interop/oidc-provider/provider.mjs");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("the provider's stdout");
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(Ok(issuer))) if issuer.starts_with("http://127.0.0.1:") => Provider { child, issuer },
        other => {
            let _ = child.kill();
            panic!("provider.mjs did not print its issuer: {other:?}");
        }
    }
}
