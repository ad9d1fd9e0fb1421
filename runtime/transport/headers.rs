//! An upstream request's headers: a set many requests share (a deployment's credentials, built
//! once) beneath the request's own few, which take precedence by name.
//!
//! A pass-through's headers are its deployment's credentials plus a content type and whatever
//! the client asked to forward. Cloning the credentials' `HeaderMap` for each request cost two
//! allocations, and the content type a third when it grew the clone; here the shared set is
//! counted, not copied, and the own few sit inline.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;
use std::sync::Arc;

/// The headers an upstream request is sent with.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    base: Base,
    /// Set by this request; each name at most once, hiding the base's values of that name.
    own: SmallVec<[(HeaderName, HeaderValue); 3]>,
}

#[derive(Debug, Clone, Default)]
enum Base {
    #[default]
    None,
    Owned(HeaderMap),
    Shared(Arc<HeaderMap>),
}

impl Base {
    fn map(&self) -> Option<&HeaderMap> {
        match self {
            Base::None => None,
            Base::Owned(map) => Some(map),
            Base::Shared(map) => Some(map),
        }
    }
}

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// `shared`'s headers, counted rather than copied.
    pub fn shared(shared: Arc<HeaderMap>) -> Headers {
        Headers { base: Base::Shared(shared), own: SmallVec::new() }
    }

    /// Sets `name` to `value` alone: any value it had, here or in the shared set, is not sent.
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        match self.own.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.own.push((name, value)),
        }
    }

    /// The first value of `name` that will be sent.
    pub fn get(&self, name: &HeaderName) -> Option<&HeaderValue> {
        match self.own.iter().find(|(n, _)| n == name) {
            Some((_, v)) => Some(v),
            None => self.base.map().and_then(|m| m.get(name)),
        }
    }

    pub fn contains_key(&self, name: &HeaderName) -> bool {
        self.get(name).is_some()
    }

    /// Every header sent, in order: the base's (those not set here), then this request's own.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        let hidden = |name: &HeaderName| self.own.iter().any(|(n, _)| n == name);
        let base = self.base.map().into_iter().flat_map(|m| m.iter()).filter(move |(n, _)| !hidden(n));
        base.chain(self.own.iter().map(|(n, v)| (n, v)))
    }

    /// The headers as one map, for the clients that take one (hyper's, reqwest's).
    pub fn into_map(self) -> HeaderMap {
        let mut map = match self.base {
            Base::None => HeaderMap::with_capacity(self.own.len()),
            Base::Owned(map) => map,
            Base::Shared(map) => Arc::unwrap_or_clone(map),
        };
        for (name, value) in self.own {
            map.insert(name, value);
        }
        map
    }
}

impl From<HeaderMap> for Headers {
    fn from(map: HeaderMap) -> Headers {
        Headers { base: Base::Owned(map), own: SmallVec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};

    fn sent(h: &Headers) -> Vec<(String, String)> {
        h.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned())).collect()
    }

    fn shared_credentials() -> Arc<HeaderMap> {
        let mut map = HeaderMap::new();
        map.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk-1"));
        map.append("x-extra", HeaderValue::from_static("a"));
        map.append("x-extra", HeaderValue::from_static("b"));
        Arc::new(map)
    }

    #[test]
    fn own_headers_follow_the_shared_ones_and_hide_theirs_by_name() {
        let shared = shared_credentials();
        let mut h = Headers::shared(Arc::clone(&shared));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(HeaderName::from_static("x-extra"), HeaderValue::from_static("mine"));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let expected = [("authorization", "Bearer sk-1"), ("content-type", "text/plain"), ("x-extra", "mine")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()));
        assert_eq!(sent(&h), expected);
        assert_eq!(h.get(&HeaderName::from_static("x-extra")).unwrap(), "mine");
        assert_eq!(h.get(&AUTHORIZATION).unwrap(), "Bearer sk-1");
        assert!(!h.contains_key(&HeaderName::from_static("x-absent")));

        // The map a client takes says the same, and the shared set is left as it was.
        let map = h.into_map();
        let mut as_map: Vec<_> = map.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned())).collect();
        as_map.sort();
        assert_eq!(as_map, expected);
        assert_eq!(shared.get_all("x-extra").iter().count(), 2);
    }

    #[test]
    fn a_map_given_whole_is_sent_as_it_is() {
        let mut map = HeaderMap::new();
        map.append("x-extra", HeaderValue::from_static("a"));
        map.append("x-extra", HeaderValue::from_static("b"));
        let h = Headers::from(map.clone());
        assert_eq!(sent(&h), [("x-extra".to_owned(), "a".to_owned()), ("x-extra".to_owned(), "b".to_owned())]);
        assert_eq!(h.into_map(), map);
        assert_eq!(sent(&Headers::new()), []);
    }
}
