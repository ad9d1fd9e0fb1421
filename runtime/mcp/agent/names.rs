//! The function names the model sees for MCP tools. OpenAI (and the providers behind the
//! translations) take function names matching `^[a-zA-Z0-9_-]{1,64}$`, while MCP tool names
//! may hold `.`, `/` or spaces and be longer, and two servers may have tools of one name: each
//! tool gets its own name with the other characters made `_`, and, when that name is taken or
//! too long, a short hash of its server and tool in place of its tail. The map goes both ways.

use std::collections::{HashMap, HashSet};

/// The longest function name providers take.
const MAX_LEN: usize = 64;

/// Function names and the (server, tool) each stands for.
#[derive(Debug, Default)]
pub struct Names {
    /// Names given, and the client's own functions' names.
    taken: HashSet<String>,
    tools: HashMap<String, (String, String)>,
    functions: HashMap<(String, String), String>,
}

impl Names {
    /// A map that gives none of `taken` (the request's own function names).
    pub fn new(taken: impl IntoIterator<Item = String>) -> Names {
        Names { taken: taken.into_iter().collect(), ..Names::default() }
    }

    /// The function name of `tool` of `server`, given once and then kept.
    pub fn assign(&mut self, server: &str, tool: &str) -> String {
        let key = (server.to_owned(), tool.to_owned());
        if let Some(name) = self.functions.get(&key) {
            return name.clone();
        }
        let plain = sanitized(tool);
        let mut name = plain.clone();
        let mut salt = 0u32;
        while name.len() > MAX_LEN || self.taken.contains(&name) {
            name = hashed(&plain, server, tool, salt);
            salt += 1;
        }
        self.taken.insert(name.clone());
        self.tools.insert(name.clone(), key.clone());
        self.functions.insert(key, name.clone());
        name
    }

    /// The (server, tool) a function name stands for.
    pub fn tool(&self, function: &str) -> Option<(&str, &str)> {
        self.tools.get(function).map(|(s, t)| (s.as_str(), t.as_str()))
    }
}

/// `tool` with every character a function name cannot hold made `_` (never empty).
fn sanitized(tool: &str) -> String {
    let name: String =
        tool.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if name.is_empty() {
        "tool".to_owned()
    } else {
        name
    }
}

/// `plain` cut to leave room for `_` and 8 hex digits of a hash of the server, the tool and
/// `salt` (tried again with the next salt in the rare case that is taken too).
fn hashed(plain: &str, server: &str, tool: &str, salt: u32) -> String {
    // FNV-1a: stable across versions and instances, so a conversation's names stay the same.
    let bytes = server.bytes().chain([0]).chain(tool.bytes()).chain(salt.to_le_bytes());
    let hash = bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let suffix = format!("{:08x}", hash >> 32);
    // `plain` is ASCII: any byte index is a character boundary.
    let head = &plain[..plain.len().min(MAX_LEN - 1 - suffix.len())];
    format!("{head}_{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        (1..=MAX_LEN).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }

    #[test]
    fn names_are_valid_unique_and_map_back() {
        let mut names = Names::new(["search".to_owned()]);
        let long = "x".repeat(80);
        let given = [
            names.assign("docs", "weather.lookup"),
            names.assign("docs", "search"),
            names.assign("wiki", "search"),
            names.assign("docs", &long),
            names.assign("docs", "ünïcode tool"),
            names.assign("docs", ""),
        ];
        assert_eq!(given[0], "weather_lookup", "a plain name stays readable");
        assert!(
            given[1].starts_with("search_") && given[1] != given[2],
            "{given:?}: the client's name and each other's"
        );
        assert!(given.iter().all(|n| valid(n)), "{given:?}");
        assert_eq!(given.iter().collect::<HashSet<_>>().len(), given.len(), "{given:?}");
        assert_eq!(names.tool(&given[2]), Some(("wiki", "search")));
        assert_eq!(names.tool(&given[3]), Some(("docs", long.as_str())));
        assert_eq!(names.assign("wiki", "search"), given[2], "kept once given");
        assert_eq!(names.tool("search"), None, "the client's own function is not an MCP tool");
        // The same tools in the same order get the same names in the next request.
        let mut again = Names::new(["search".to_owned()]);
        assert_eq!(again.assign("docs", "weather.lookup"), given[0]);
        assert_eq!(again.assign("docs", "search"), given[1]);
    }
}
