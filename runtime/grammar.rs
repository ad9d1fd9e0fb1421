//! The grammars of values a user names that end up in an upstream URL: an AWS region becomes
//! part of a host name, an API version a query value, a model name a path segment. Each is
//! checked against its own grammar at install (literal values) and at start (values a secret
//! reference resolved to), so no value can move a request to another host or path.
//!
//! The names a user gives (app ids, service ids, workspaces, secret keys, model names) have
//! grammars too: they end up in URLs, in log lines, in store and Redis keys (where U+001F is
//! ferrolite's own separator). The manifest schema carries the same patterns, and the doors
//! (HTTP, RPC, CLI) all reach these checks through the controller.
//!
//! Each check returns the reason a value is refused, written to follow the value's JSON path.

/// A grammar a schema pattern and a check share.
#[derive(Debug, Clone, Copy)]
pub struct Grammar {
    /// The pattern, as the JSON Schema has it.
    pub pattern: &'static str,
    /// What a refused value is told, after it: `"x y" is not URL-safe: use ...`.
    pub says: &'static str,
}

/// App ids, service ids and workspaces: a URL path segment as written, a store key.
pub const NAME: Grammar = Grammar {
    pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    says: "is not URL-safe: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit",
};

/// Workspace secret keys: what `HYPHA_SECRET:KEY` can name.
pub const SECRET_KEY: Grammar = Grammar {
    pattern: "^[A-Za-z_][A-Za-z0-9_]{0,127}$",
    says: "is not a secret key: use 1-128 letters, digits and '_', not starting with a digit",
};

/// A model group's name (`model_name`): placed in paths (`/v1/models/{model}`), ids, labels.
pub const MODEL_NAME: Grammar = Grammar {
    pattern: "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,256}$",
    says: "is not a model name: use 1-256 characters, none of them a control character",
};

/// Every grammar, for messages about a pattern a schema names.
const ALL: [Grammar; 3] = [NAME, SECRET_KEY, MODEL_NAME];

/// What a value that does not match `pattern` is told, when the pattern is one of these.
pub fn says(pattern: &str) -> Option<&'static str> {
    ALL.iter().find(|g| g.pattern == pattern).map(|g| g.says)
}

/// An app id, a service id or a workspace.
pub fn name(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let ok = (1..=64).contains(&value.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    refuse_unless(ok, value, NAME)
}

/// A workspace secret's key.
pub fn secret_key(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let ok = (1..=128).contains(&value.len())
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    refuse_unless(ok, value, SECRET_KEY)
}

/// A model group's name.
pub fn model_name(value: &str) -> Result<(), String> {
    let ok = (1..=256).contains(&value.chars().count()) && !value.chars().any(char::is_control);
    refuse_unless(ok, value, MODEL_NAME)
}

fn refuse_unless(ok: bool, value: &str, grammar: Grammar) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{} {}", quoted(value), grammar.says))
    }
}

/// The longest model name accepted in an upstream path.
const MAX_MODEL_NAME: usize = 256;

/// An AWS region: `us-east-1`, `us-gov-west-1`, `eusc-de-east-1`, ... It is pasted into
/// Bedrock's host name, so nothing but lowercase letters, digits and single hyphens may pass.
pub fn aws_region(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split('-').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    let ok = value.len() <= 32
        && parts.len() >= 3
        && (2..=4).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=2).contains(&last.len())
        && last.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!("{} is not an AWS region: write one like us-east-1", quoted(value)))
    }
}

/// A Google Cloud project (Vertex AI's `vertex_project`), placed in the upstream path: a project
/// id (`my-project-123`: 6-30 lowercase letters, digits and hyphens, starting with a letter,
/// not ending with a hyphen), a domain-scoped one (`example.com:my-project`), or a project
/// number.
pub fn gcp_project(value: &str) -> Result<(), String> {
    let (domain, id) = value.rsplit_once(':').map_or((None, value), |(d, id)| (Some(d), id));
    let domain_ok = domain.is_none_or(|d| {
        (1..=63).contains(&d.len())
            && d.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
            && !d.starts_with(['.', '-'])
    });
    let number = (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit());
    let name = (6..=30).contains(&id.len())
        && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && !id.ends_with('-')
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if domain_ok && (name || (number && domain.is_none())) {
        Ok(())
    } else {
        Err(format!(
            "{} is not a Google Cloud project: use its id (6-30 lowercase letters, digits and '-', e.g. my-project-123) or its number",
            quoted(value)
        ))
    }
}

/// A Vertex AI location (`us-central1`, `europe-west4`, `global`): it becomes part of the host
/// name (`{location}-aiplatform.googleapis.com`), so lowercase letters, digits and single
/// hyphens only.
pub fn gcp_location(value: &str) -> Result<(), String> {
    let ok = (2..=32).contains(&value.len())
        && value.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && value
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a Vertex AI location: write one like us-central1, europe-west4 or global",
            quoted(value)
        ))
    }
}

/// An API version (Azure's `api-version`): `2024-10-21`, `2024-08-01-preview`, `preview`.
pub fn api_version(value: &str) -> Result<(), String> {
    let mut bytes = value.bytes();
    let ok = (1..=64).contains(&value.len())
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not an API version: use 1-64 letters, digits, '-', '.' or '_' (e.g. 2024-10-21)",
            quoted(value)
        ))
    }
}

/// A model name as an upstream knows it, placed in URL paths (Azure deployments, Gemini and
/// Bedrock models). Paths percent-encode it, so `/` and `:` are fine (Bedrock ARNs have both);
/// control characters, white space and a name that is only dots (a `..` segment) are not.
pub fn upstream_model(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_MODEL_NAME {
        return Err(format!("a model name must be 1-{MAX_MODEL_NAME} bytes long"));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{} has control characters or white space", quoted(value)));
    }
    if value.bytes().all(|b| b == b'.') {
        return Err(format!("{} is not a model name", quoted(value)));
    }
    Ok(())
}

/// `value` in quotes for an error message, cut short and with control characters escaped so a
/// hostile value cannot forge log lines or terminal output.
/// A URL path sent on under a base (a pass-through call's, without its leading '/'):
/// segments of visible ASCII, none empty, `.` or `..` (escaped or not), no escaped `/` or `\`,
/// and no `\`, `#` or `?`, so it stays under the base it is put on.
pub fn url_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("it is empty");
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) || path.contains(['\\', '#', '?']) {
        return Err("only visible ASCII without '\\', '#' or '?' may be sent");
    }
    for segment in path.split('/') {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        if segment.is_empty() || decoded == "." || decoded == ".." {
            return Err("no segment may be empty, '.' or '..'");
        }
        if decoded.contains("%2f") || decoded.contains("%5c") {
            return Err("no segment may hold an escaped '/' or '\\'");
        }
    }
    Ok(())
}

pub fn quoted(value: &str) -> String {
    const SHOWN: usize = 64;
    let mut out = String::from("\"");
    for (i, c) in value.chars().enumerate() {
        if i == SHOWN {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_aws_regions_and_nothing_else() {
        for ok in ["us-east-1", "us-gov-west-1", "eu-central-2", "ap-southeast-4", "cn-northwest-1", "eusc-de-east-1"] {
            assert_eq!(aws_region(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "x@127.0.0.1:9/#",
            "x@127.0.0.1:9/?",
            "us-east-1.x@127.0.0.1:9",
            "us-east-1/",
            "US-EAST-1",
            "us-east",
            "us--east-1",
            "us-east-123",
            "us-east-1\n",
            "localhost",
        ] {
            assert!(aws_region(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn google_projects_and_locations_keep_to_their_grammars() {
        for ok in ["my-project", "my-project-123", "example.com:my-project", "123456789012"] {
            assert_eq!(gcp_project(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "short",
            "My-Project",
            "my-project-",
            "1project",
            "my_project",
            "my-project/../../x",
            "proj@evil.com",
            "example.com:123",
            "my-project\n",
            &"p".repeat(31),
        ] {
            assert!(gcp_project(bad).is_err(), "{bad:?} must be refused");
        }
        for ok in ["us-central1", "europe-west4", "global", "us", "northamerica-northeast1"] {
            assert_eq!(gcp_location(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "x",
            "US-CENTRAL1",
            "us--central1",
            "us-central1-",
            "-us",
            "evil.com#",
            "us-central1.attacker.net",
            "1us",
        ] {
            assert!(gcp_location(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn api_versions_and_model_names_stay_in_their_place() {
        for ok in ["2024-10-21", "2024-08-01-preview", "preview", "v1"] {
            assert_eq!(api_version(ok), Ok(()), "{ok}");
        }
        for bad in ["", "2024&x=1", "2024#", "a/b", "-1", "x y"] {
            assert!(api_version(bad).is_err(), "{bad:?} must be refused");
        }
        for ok in ["gpt-4o", "anthropic.claude-3-sonnet-20240229-v1:0", "meta-llama/Llama-3-8B", "arn:aws:bedrock:x/y"]
        {
            assert_eq!(upstream_model(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a\nb", "a b", "a\u{1f}b", &"m".repeat(300)] {
            assert!(upstream_model(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn names_keys_and_model_names_keep_to_their_grammars() {
        for ok in ["my-app", "a", "App_1.2", &"x".repeat(64)] {
            assert_eq!(name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a\nb", "a\0", "a\u{1f}b", "\u{1b}[31mred", "../../b/apps/x", ".hidden", &"x".repeat(65), "a b"]
        {
            assert!(name(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(secret_key("OPENAI_KEY").is_ok() && secret_key("_k").is_ok());
        for bad in ["", "1KEY", "A-B", "a\u{1f}", &"k".repeat(129)] {
            assert!(secret_key(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(model_name("gpt-4o").is_ok() && model_name("org/model name").is_ok());
        for bad in ["", "a\nb", "x\u{85}", &"m".repeat(257)] {
            assert!(model_name(bad).is_err(), "{bad:?} must be refused");
        }
        // The schema's patterns say the same as the checks.
        for (grammar, check, samples) in [
            (NAME, name as fn(&str) -> Result<(), String>, vec!["ok-1", "", "a\nb", "../x", "A.b_c"]),
            (SECRET_KEY, secret_key, vec!["K_1", "1K", "a-b", "_"]),
            (MODEL_NAME, model_name, vec!["gpt", "", "a\u{7f}", "org/x y"]),
        ] {
            let schema = serde_json::json!({"type": "string", "pattern": grammar.pattern});
            let validator = jsonschema::draft202012::new(&schema).expect("the pattern compiles");
            for sample in samples {
                assert_eq!(validator.is_valid(&serde_json::json!(sample)), check(sample).is_ok(), "{sample:?}");
            }
        }
    }

    #[test]
    fn quoted_values_cannot_forge_lines() {
        assert_eq!(quoted("a\nb\u{1b}[31m"), "\"a\\nb\\u{1b}[31m\"");
        assert!(quoted(&"x".repeat(5000)).len() < 80);
    }
}
