//! Wildcard model groups, as litellm routes them: a deployment `model_name: "openai/*"` with
//! `model: "openai/*"` serves any model its pattern matches, the requested name put in place of
//! the `*` in the upstream call. Exact names win over wildcards; among wildcards, the one with
//! the most literal text (`openai/gpt-4*` before `openai/*` before `*`).

pub use crate::providers::deployment::{captures, fill};

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
    fn a_pattern_captures_what_its_stars_stand_for() {
        assert_eq!(captures("openai/*", "openai/gpt-4o-mini"), Some(vec!["gpt-4o-mini"]));
        assert_eq!(captures("*", "anything/at-all"), Some(vec!["anything/at-all"]));
        assert_eq!(captures("claude-*-latest", "claude-3-5-sonnet-latest"), Some(vec!["3-5-sonnet"]));
        assert_eq!(captures("openai/*", "anthropic/claude"), None);
        assert_eq!(captures("openai/*", "openai/"), None, "the star stands for something");
        assert_eq!(captures("gpt-4o", "gpt-4o"), None, "not a pattern");
        // litellm's own example: two stars, the first as long as it can be.
        assert_eq!(captures("fo::*:static::*", "fo::hi::static::hi"), Some(vec!["hi:", "hi"]));
        assert_eq!(captures("a*b*c", "axbybzc"), Some(vec!["xby", "z"]));
        assert_eq!(captures("a*b*c", "abc"), None, "each star stands for something");
        assert_eq!(captures("*-*", "x-y-z"), Some(vec!["x-y", "z"]));
    }

    #[test]
    fn stars_are_filled_in_order() {
        assert_eq!(fill("openai/fo::*:static::*", &["hi:", "hi"]), "openai/fo::hi::static::hi");
        assert_eq!(fill("openai/*", &["gpt-4o"]), "openai/gpt-4o");
        assert_eq!(fill("a*b*", &["x"]), "axb*");
    }

    #[test]
    fn the_most_literal_pattern_comes_first() {
        let names: Vec<String> = ["*", "exact", "openai/*", "openai/gpt-4*"].map(String::from).into();
        assert_eq!(ordered(names.iter()), ["openai/gpt-4*", "openai/*", "*"]);
    }
}
