//! [`KnownClient`]: the MCP clients whose callbacks the self-check knows.

use std::fmt;

/// A client whose connection the operator expects; the self-check makes sure it can connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KnownClient {
    /// Claude (claude.ai, Desktop, mobile): connects from Anthropic's servers.
    Claude,
    /// ChatGPT connectors: connect from OpenAI's servers.
    ChatGpt,
    /// Claude Code: a loopback callback on the user's machine.
    ClaudeCode,
    /// Cursor: a `cursor://` private-use callback.
    Cursor,
    /// VS Code: `https://vscode.dev/redirect` or a loopback callback.
    VsCode,
    /// The MCP Inspector: a browser app on `http://localhost:6274`.
    Inspector,
}

impl KnownClient {
    /// Every known client.
    pub const ALL: [Self; 6] =
        [Self::Claude, Self::ChatGpt, Self::ClaudeCode, Self::Cursor, Self::VsCode, Self::Inspector];

    /// Parses a name: `claude`, `chatgpt`, `claude-code`, `cursor`, `vscode`, `inspector`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// The name [`Self::parse`] reads.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::ChatGpt => "chatgpt",
            Self::ClaudeCode => "claude-code",
            Self::Cursor => "cursor",
            Self::VsCode => "vscode",
            Self::Inspector => "inspector",
        }
    }

    /// The callbacks this client registers, as it sends them.
    pub const fn redirect_uris(self) -> &'static [&'static str] {
        match self {
            Self::Claude => &["https://claude.ai/api/mcp/auth_callback", "https://claude.com/api/mcp/auth_callback"],
            Self::ChatGpt => &["https://chatgpt.com/connector_platform_oauth_redirect"],
            Self::ClaudeCode => &["http://localhost:53682/callback"],
            Self::Cursor => &["cursor://anysphere.cursor-mcp/oauth/callback"],
            Self::VsCode => &["https://vscode.dev/redirect", "http://127.0.0.1:33418/"],
            Self::Inspector => &["http://localhost:6274/oauth/callback"],
        }
    }

    /// Whether the client reaches the server from the internet rather than from the user's
    /// machine, and so needs a public https URL.
    pub const fn connects_from_the_internet(self) -> bool {
        matches!(self, Self::Claude | Self::ChatGpt)
    }
}

impl fmt::Display for KnownClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
