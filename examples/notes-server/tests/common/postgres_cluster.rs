//! A throwaway PostgreSQL cluster of a test's own: on a free loopback port, with TLS on and a
//! certificate of a CA made for it, that the test can stop and start again (the database going
//! away under a running server) and that is removed on drop.
//!
//! The shared test database cannot serve these tests: its certificate is not one the test
//! controls, and stopping it would break every other test running at the same time.
//!
//! Synchronous on purpose (`std::process::Command`): every step is a short external command,
//! and a tokio test may call it directly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How much of the cluster's log a failure message shows.
const LOG_TAIL_LINES: usize = 40;

/// A running scratch cluster; stopped and deleted on drop.
pub struct ScratchCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Running as root: PostgreSQL refuses to, so every command runs as `postgres`.
    as_postgres: bool,
}

impl ScratchCluster {
    /// Creates, configures and starts a new cluster in a new temporary directory. Panics, with
    /// the failing command's output and the tail of the cluster's log, if any step fails.
    pub fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pg-scratch-{name}-{}-{}", std::process::id(), super::nanos()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let as_postgres = running_as_root();
        let mut cluster = Self { dir, bin: bin_dir(), port: 0, as_postgres };
        cluster.make_certificates();
        if as_postgres {
            cluster.run_checked("chown", Command::new("chown").arg("-R").arg("postgres:postgres").arg(&cluster.dir));
        }
        let data = cluster.data_dir();
        let mut initdb = cluster.pg_command("initdb");
        initdb.arg("-D").arg(&data).args(["-A", "trust", "-U", "postgres", "--no-sync", "--no-instructions"]);
        initdb.args(["-E", "UTF8"]);
        cluster.run_checked("initdb", &mut initdb);
        cluster.port = free_port();
        let conf = format!(
            "\n# scratch cluster of a test\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{dir}'\nssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n\
             fsync = off\nmax_connections = 100\n",
            port = cluster.port,
            dir = cluster.dir.display(),
            cert = cluster.dir.join("server.crt").display(),
            key = cluster.dir.join("server.key").display(),
        );
        let conf_path = data.join("postgresql.conf");
        let mut text =
            std::fs::read_to_string(&conf_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", conf_path.display()));
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
        cluster.start_again();
        cluster
    }

    /// The loopback port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@{host}:{port}/postgres`, with `?{query}` when `query` is not empty.
    pub fn url(&self, host: &str, query: &str) -> String {
        let base = format!("postgres://postgres@{host}:{}/postgres", self.port);
        if query.is_empty() { base } else { format!("{base}?{query}") }
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA unrelated to the server's certificate: what a client trusting the wrong CA has.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.join("other-ca.crt")
    }

    /// The cluster's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Stops the cluster, closing every connection (`pg_ctl stop -m fast`).
    pub fn stop(&self) {
        let mut stop = self.pg_command("pg_ctl");
        stop.arg("-D").arg(self.data_dir()).args(["stop", "-m", "fast", "-w"]);
        self.run_checked("pg_ctl stop", &mut stop);
    }

    /// Starts the cluster (again), on the same port, and waits until it accepts connections.
    pub fn start_again(&self) {
        let mut start = self.pg_command("pg_ctl");
        start.arg("-D").arg(self.data_dir()).arg("-l").arg(self.dir.join("postgres.log"));
        start.args(["-w", "-t", "60", "start"]);
        self.run_checked("pg_ctl start", &mut start);
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// One of PostgreSQL's programs, as `postgres` when running as root, in the cluster's
    /// directory (so that no command complains it cannot enter the test's working directory).
    fn pg_command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new(runuser());
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    /// Runs `cmd` to completion; panics with its output and the tail of the log if it fails.
    fn run_checked(&self, what: &str, cmd: &mut Command) -> Output {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}{}", self.log_tail()));
        if !out.status.success() {
            panic!(
                "{what} failed ({}): {cmd:?}\nstdout:\n{}\nstderr:\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
        out
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        if log.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("\nlast lines of {}:\n{tail}", self.dir.join("postgres.log").display())
    }

    /// A CA, a server certificate it signs for `localhost` only (so that connecting by IP
    /// address fails host-name verification), and a second, unrelated CA.
    fn make_certificates(&self) {
        let cnf = self.dir.join("openssl.cnf");
        // One configuration of our own, so that no system default adds extensions the tests
        // do not expect (or that clash with these).
        std::fs::write(
            &cnf,
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n\
             [v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n\
             [v3_server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", cnf.display()));
        self.make_ca(&cnf, "ca", "scratch test CA");
        self.make_ca(&cnf, "other-ca", "unrelated test CA");
        let mut csr = self.openssl();
        csr.args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .arg("-config")
            .arg(&cnf)
            .args(["-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(self.dir.join("server.key"))
            .arg("-out")
            .arg(self.dir.join("server.csr"));
        self.run_checked("openssl (server key)", &mut csr);
        let mut sign = self.openssl();
        sign.args(["x509", "-req", "-days", "2", "-sha256"])
            .arg("-in")
            .arg(self.dir.join("server.csr"))
            .arg("-CA")
            .arg(self.ca_file())
            .arg("-CAkey")
            .arg(self.dir.join("ca.key"))
            .arg("-CAcreateserial")
            .arg("-CAserial")
            .arg(self.dir.join("ca.srl"))
            .arg("-extfile")
            .arg(&cnf)
            .args(["-extensions", "v3_server"])
            .arg("-out")
            .arg(self.dir.join("server.crt"));
        self.run_checked("openssl (server certificate)", &mut sign);
        // PostgreSQL refuses a key that others can read.
        set_mode(&self.dir.join("server.key"), 0o600);
    }

    fn make_ca(&self, cnf: &Path, stem: &str, common_name: &str) {
        let mut ca = self.openssl();
        ca.args(["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .args(["-days", "2", "-sha256"])
            .arg("-config")
            .arg(cnf)
            .args(["-extensions", "v3_ca"])
            .args(["-subj", &format!("/CN={common_name}")])
            .arg("-keyout")
            .arg(self.dir.join(format!("{stem}.key")))
            .arg("-out")
            .arg(self.dir.join(format!("{stem}.crt")));
        self.run_checked(&format!("openssl ({stem})"), &mut ca);
    }

    fn openssl(&self) -> Command {
        let mut cmd = Command::new("openssl");
        cmd.current_dir(&self.dir);
        cmd
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let mut stop = self.pg_command("pg_ctl");
            stop.arg("-D").arg(self.data_dir()).args(["stop", "-m", "immediate", "-w"]);
            // Already stopped (a test's `stop`, or a failed start) is fine.
            let _ = stop.output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PostgreSQL's programs: the highest version under `/usr/lib/postgresql` (Debian's layout),
/// else wherever `pg_config` says.
fn bin_dir() -> PathBuf {
    let installed = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    if let Some((_, bin)) = installed {
        return bin;
    }
    let out = Command::new("pg_config").arg("--bindir").output().unwrap_or_else(|e| {
        panic!("no PostgreSQL under /usr/lib/postgresql and no pg_config ({e}): install PostgreSQL")
    });
    assert!(out.status.success(), "pg_config --bindir failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

/// A port nothing listens on now; the cluster takes it moments later.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("no free port: {e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("no local address: {e}")).port()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}
