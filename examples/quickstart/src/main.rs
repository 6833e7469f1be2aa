//! The smallest MCP server behind OAuth 2.1: one tool, the embedded authorization server on SQLite.
use axum::http::request::Parts;
use mcp_oauth::{AuthContext, McpAuth};
use rmcp::handler::server::{router::tool::ToolRouter, tool::Extension};
use rmcp::{ServerHandler, model::ServerCapabilities, model::ServerConfig, tool, tool_handler, tool_router};

#[derive(Clone)]
struct Hello(ToolRouter<Self>);

#[tool_router]
impl Hello {
    #[tool(description = "Greets the signed-in user.")]
    async fn hello(&self, Extension(parts): Extension<Parts>) -> String {
        let who = parts.extensions.get::<AuthContext>().map_or("nobody", |caller| caller.subject.as_str());
        format!("Hello, {who}!")
    }
}

#[tool_handler(router = self.0)]
impl ServerHandler for Hello {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::var("LISTEN").unwrap_or("127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let url = std::env::var("PUBLIC_URL").unwrap_or(format!("http://{}", listener.local_addr()?));
    let auth = McpAuth::builder(&url).database("sqlite://data/quickstart.db?mode=rwc").build().await?;
    let mcp = auth.mcp_service(|| Ok(Hello(Hello::tool_router())));
    let app = auth.routes().nest_service(auth.mcp_path(), mcp);
    if auth.create_first_user("admin", "data/admin-password").await? {
        println!("sign in as admin with the password in data/admin-password");
    }
    println!("MCP server URL (paste into your client): {}", auth.mcp_url());
    Ok(mcp_oauth::serve(listener, app).await?)
}
