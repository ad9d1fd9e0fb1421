//! Wildcard model groups, as litellm routes them: a deployment `model_name: "openai/*"` with
//! `model: "openai/*"` serves any model its pattern matches, the requested name put in place of
//! the `*` in the upstream call. Exact names win over wildcards; among wildcards, the one with
//! the most literal text (`openai/gpt-4*` before `openai/*` before `*`).

pub use crate::providers::deployment::capture;

/// Whether a model name is a pattern.
pub fn is_pattern(model_name: &str) -> bool {
    model_name.contains('*')
}

/// The patterns of `names`, most specific first.
pub fn ordered<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut patterns: Vec<String> = names.filter(|n| is_pattern(n)).cloned().collect();
    patterns.sort_by_key(|p| std::cmp::Reverse(p.len() - p.matches('*').count()));
    patterns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_captures_what_its_star_stands_for() {
        assert_eq!(capture("openai/*", "openai/gpt-4o-mini"), Some("gpt-4o-mini"));
        assert_eq!(capture("*", "anything/at-all"), Some("anything/at-all"));
        assert_eq!(capture("claude-*-latest", "claude-3-5-sonnet-latest"), Some("3-5-sonnet"));
        assert_eq!(capture("openai/*", "anthropic/claude"), None);
        assert_eq!(capture("openai/*", "openai/"), None, "the star stands for something");
        assert_eq!(capture("gpt-4o", "gpt-4o"), None, "not a pattern");
    }

    #[test]
    fn the_most_literal_pattern_comes_first() {
        let names: Vec<String> = ["*", "exact", "openai/*", "openai/gpt-4*"].map(String::from).into();
        assert_eq!(ordered(names.iter()), ["openai/gpt-4*", "openai/*", "*"]);
    }
}
