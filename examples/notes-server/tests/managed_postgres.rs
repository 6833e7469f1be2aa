//! The example on PostgreSQL over TLS, as a managed database is reached: the server's
//! connections are encrypted when the URL asks for it, `verify-full` refuses a certificate
//! from a CA the URL does not name and a host name the certificate does not carry, and
//! `verify-ca` checks the CA only. Each test runs its own scratch cluster with a certificate
//! of a CA made for it (see `common::postgres_cluster`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;
use common::flow::register;
use common::postgres_cluster::ScratchCluster;
use sqlx::Connection as _;

/// How long a server that cannot reach its database may take to give up.
const GIVE_UP_WITHIN: Duration = Duration::from_secs(60);

/// A password in the URL of the failing tests: it must never be printed.
const PASSWORD_IN_URL: &str = "not-a-real-secret-7Qx";

/// A public client's registration: the server writes it to the database.
fn registration(name: &str) -> serde_json::Value {
    serde_json::json!({
        "client_name": name,
        "redirect_uris": ["http://127.0.0.1:9/cb"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    })
}

/// Registers a client at `server`, which succeeds only if the server can write its database.
async fn registers_a_client(server: &Server, name: &str) {
    let (status, body) = register(&reqwest::Client::new(), &server.base_url, registration(name)).await;
    assert_eq!(status, 201, "{body}\nserver log:\n{}", server.log());
}

/// `(encrypted, plain)`: how many connections named `application_name` the cluster has of
/// each, seen through a plain connection of the test's own (which is not named so).
async fn connections_by_encryption(cluster: &ScratchCluster, application_name: &str) -> (i64, i64) {
    let mut conn = sqlx::PgConnection::connect(&cluster.url("127.0.0.1", "sslmode=disable")).await.unwrap();
    let count = |ssl: bool| {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1 AND s.ssl = $2",
        )
        .bind(application_name.to_owned())
        .bind(ssl)
    };
    let encrypted = count(true).fetch_one(&mut conn).await.unwrap();
    let plain = count(false).fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    (encrypted, plain)
}

/// Runs the server on `database_url`, with the environment `Server::start_with` gives it,
/// and expects it to give up: it must exit unsuccessfully within [`GIVE_UP_WITHIN`]. Returns
/// what it printed (standard output, then standard error).
fn server_fails_to_start(database_url: &str) -> String {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_notes-server"))
        .env("NOTES_LISTEN", "127.0.0.1:0")
        .env_remove("NOTES_PUBLIC_URL")
        .env("DATABASE_URL", database_url)
        .env("NOTES_ADMIN_PASSWORD", common::PASSWORD)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start notes-server");
    // Read both pipes as the server writes, so that it never blocks on a full one.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > GIVE_UP_WITHIN {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "notes-server was still running after {GIVE_UP_WITHIN:?} on a database it cannot trust\n\
                 stdout:\n{}\nstderr:\n{}",
                stdout.join().unwrap(),
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = format!("{}{}", stdout.join().unwrap(), stderr.join().unwrap());
    println!("notes-server exited ({status}) after {:?}, printing:\n{output}", started.elapsed());
    assert!(!status.success(), "notes-server started on a database it cannot trust:\n{output}");
    assert!(!output.contains(PASSWORD_IN_URL), "the database password is in the output:\n{output}");
    output
}

/// Says why the connection failed in words an operator can act on: the certificate.
fn blames_the_certificate(output: &str) {
    assert!(
        output.to_lowercase().contains("certificate"),
        "the output does not say that the certificate was refused:\n{output}"
    );
    assert!(output.contains("sslrootcert"), "the output does not name the setting that fixes it:\n{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_reaches_postgres_over_verify_full_tls() {
    let started = Instant::now();
    let cluster = ScratchCluster::start("tls");
    let application_name = format!("notes-tls-{}", common::nanos());
    let query =
        format!("sslmode=verify-full&sslrootcert={}&application_name={application_name}", cluster.ca_file().display());
    let server = Server::start_with("tls", &[("DATABASE_URL", &cluster.url("localhost", &query))]);
    registers_a_client(&server, "tls").await;

    let (encrypted, plain) = connections_by_encryption(&cluster, &application_name).await;
    assert!(encrypted > 0, "no encrypted connection of the server's; cluster log:\n{}", cluster.log());
    assert_eq!(plain, 0, "the server has a connection in clear");
    println!("{encrypted} encrypted connections, none plain, in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_certificate_from_another_ca() {
    let started = Instant::now();
    let cluster = ScratchCluster::start("other-ca");
    let url = format!(
        "postgres://postgres:{PASSWORD_IN_URL}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        cluster.port(),
        cluster.other_ca_file().display()
    );
    blames_the_certificate(&server_fails_to_start(&url));
    println!("refused in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let started = Instant::now();
    let cluster = ScratchCluster::start("host-name");
    let ca = cluster.ca_file();
    // The certificate names `localhost` only, not the address.
    let full = cluster.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    blames_the_certificate(&server_fails_to_start(&full));

    let ca_only = cluster.url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={}", ca.display()));
    let server = Server::start_with("verify-ca", &[("DATABASE_URL", &ca_only)]);
    registers_a_client(&server, "verify-ca").await;
    println!("verify-full refused, verify-ca accepted, in {:?}", started.elapsed());
}
