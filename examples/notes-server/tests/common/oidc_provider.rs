//! node-oidc-provider (`interop/oidc-provider`, pinned) on a loopback port: the certified
//! OpenID provider, as an external authorization server or an upstream identity provider.
//! What it writes to standard error is kept: among it a line per answer of its token endpoint,
//! which [`Provider::grants`] and [`Provider::refusals`] count.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The running provider, killed on drop.
pub struct Provider {
    child: Child,
    /// Its issuer, `http://127.0.0.1:<port>`.
    pub issuer: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Provider {
    /// Everything the provider wrote to standard error so far.
    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// How many token requests of `grant_type` it answered with tokens.
    pub fn grants(&self, grant_type: &str) -> usize {
        let line = format!("grant.success grant_type={grant_type} ");
        self.lines().iter().filter(|l| l.starts_with(&line)).count()
    }

    /// Every access and refresh token it issued (started with `OIDC_TEST_CONTROLS`).
    pub fn issued_tokens(&self) -> Vec<String> {
        let mut tokens = Vec::new();
        for line in self.lines() {
            let Some(rest) = line.strip_prefix("grant.tokens ") else { continue };
            for pair in rest.split(' ') {
                if let Some((_, value)) = pair.split_once('=')
                    && !value.is_empty()
                {
                    tokens.push(value.to_owned());
                }
            }
        }
        tokens
    }

    /// How many token requests of `grant_type` it refused with `error`.
    pub fn refusals(&self, grant_type: &str, error: &str) -> usize {
        let line = format!("grant.error grant_type={grant_type} error={error}");
        self.lines().iter().filter(|l| **l == line).count()
    }

    /// Ends every grant of `account` at the provider (started with `OIDC_TEST_CONTROLS`), as a
    /// person who removes the client's access there; returns how many it ended.
    pub async fn end_grants(&self, account: &str) -> u64 {
        let url = format!("{}/test/end-grants?account={account}", self.issuer);
        let resp = reqwest::Client::new().post(url).send().await.unwrap();
        assert_eq!(resp.status(), 200, "start the provider with OIDC_TEST_CONTROLS");
        let answer: serde_json::Value = resp.json().await.unwrap();
        answer["ended"].as_u64().unwrap()
    }

    fn lines(&self) -> Vec<String> {
        // A poisoned lock only means a reader thread panicked; the lines are still whole.
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
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
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node interop/oidc-provider/provider.mjs");
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("the provider's stderr");
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("the provider's stdout");
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(Ok(issuer))) if issuer.starts_with("http://127.0.0.1:") => Provider { child, issuer, log },
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let said = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).join("\n");
            panic!("provider.mjs did not print its issuer: {other:?}\n{said}");
        }
    }
}
