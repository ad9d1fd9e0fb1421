//! What one caller may reach of an app's MCP servers: an API key may name the servers and the
//! tools (`{server}-{tool}`) its holder may list and call, beside the app's own
//! `allowed_tools` / `disallowed_tools`. A token, or a key without lists, reaches everything
//! the app permits.

use super::gateway::{Gateway, GatewayError, ToolListing};
use rmcp::model::{CallToolRequestParams, CallToolResponse, Tool};

/// A caller's allow-lists; empty lists allow everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    servers: Vec<String>,
    tools: Vec<String>,
}

impl Access {
    /// Everything the app permits.
    pub fn all() -> Access {
        Access::default()
    }

    /// `servers` by name, `tools` by their prefixed names.
    pub fn new(servers: Vec<String>, tools: Vec<String>) -> Access {
        Access { servers, tools }
    }

    pub fn server(&self, server: &str) -> bool {
        self.servers.is_empty() || self.servers.iter().any(|s| s == server)
    }

    /// `tool` under its server's own name.
    pub fn tool(&self, server: &str, tool: &str) -> bool {
        self.server(server) && (self.tools.is_empty() || self.tools.iter().any(|t| t == &super::prefixed(server, tool)))
    }
}

/// The gateway as one caller sees it.
#[derive(Debug, Clone, Copy)]
pub struct Scoped<'g> {
    pub gateway: &'g Gateway,
    pub access: &'g Access,
}

impl<'g> Scoped<'g> {
    /// Whether the app has the server and the caller may reach it.
    pub fn has_server(&self, name: &str) -> bool {
        self.gateway.has_server(name) && self.access.server(name)
    }

    /// The servers the caller may reach.
    pub fn server_names(&self) -> impl Iterator<Item = &'g str> + '_ {
        self.gateway.server_names().filter(|s| self.access.server(s))
    }

    /// The caller's tools of one server, under their own names.
    pub async fn server_tools(&self, name: &str) -> Result<Vec<Tool>, GatewayError> {
        if !self.access.server(name) {
            return Err(GatewayError::Forbidden(format!("this key may not use MCP server {name:?}")));
        }
        let tools = self.gateway.server_tools(name).await?;
        Ok(tools.into_iter().filter(|t| self.access.tool(name, &t.name)).collect())
    }

    /// The caller's tools of every server, prefixed.
    pub async fn tool_listing(&self) -> ToolListing<'g> {
        let mut listing = self.gateway.tool_listing().await;
        listing.tools.retain(|(server, tool)| {
            let own = tool.name.strip_prefix(&format!("{server}-")).unwrap_or(&tool.name).to_owned();
            self.access.tool(server, &own)
        });
        listing
    }

    /// Calls a prefixed tool, when the caller may.
    pub async fn call(&self, params: CallToolRequestParams) -> Result<CallToolResponse, GatewayError> {
        self.gateway.check_access(&params.name, self.access)?;
        self.gateway.call(params).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_allow_everything_and_tools_name_their_server() {
        assert!(Access::all().tool("docs", "search"));
        let access = Access::new(vec!["docs".into()], vec!["docs-search".into()]);
        assert!(access.tool("docs", "search"));
        assert!(!access.tool("docs", "delete"));
        assert!(!access.tool("math", "search"), "another server");
        let servers_only = Access::new(vec!["docs".into()], vec![]);
        assert!(servers_only.tool("docs", "delete") && !servers_only.server("math"));
    }
}
