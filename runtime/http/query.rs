//! A request's query string, read as clients write it: `application/x-www-form-urlencoded`,
//! so `?model=org%2Fx` names the group `org/x` and `+` is a space.

use std::borrow::Cow;

/// The first value of `name` in `query`, percent-decoded.
pub fn param<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    pairs(query).find(|(key, _)| key == name).map(|(_, value)| value)
}

/// Every `name=value` of `query`, percent-decoded, in order.
pub fn pairs(query: Option<&str>) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::{pairs, param};

    #[test]
    fn values_are_percent_decoded_and_the_first_one_counts() {
        assert_eq!(param(Some("model=org%2Fx&b=1"), "model").as_deref(), Some("org/x"));
        assert_eq!(param(Some("a=1&model=my+model&model=other"), "model").as_deref(), Some("my model"));
        assert_eq!(param(Some("mo%64el=x"), "model").as_deref(), Some("x"), "names are decoded too");
        assert_eq!(param(Some("model"), "model").as_deref(), Some(""));
        assert_eq!(param(Some("x=1"), "model"), None);
        assert_eq!(param(None, "model"), None);
        let all: Vec<_> = pairs(Some("a=%41&b=x%2By+z&c")).collect();
        assert_eq!(all, [("a".into(), "A".into()), ("b".into(), "x+y z".into()), ("c".into(), "".into())]);
    }
}
