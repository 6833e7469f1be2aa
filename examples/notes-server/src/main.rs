//! An MCP server with per-user notes behind the embedded OAuth 2.1 authorization server.
//!
//! Not built yet: it needs `oauth-axum`, `mcp-guard` and `oauth-store-sql`.

fn main() {
    eprintln!("notes-server is not built yet: see the README");
    std::process::exit(2);
}
