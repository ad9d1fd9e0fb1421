//! Real traffic's headers: what the openai SDK sends with a request and what OpenAI's API
//! answers with, where the load tools send four or five and the fake answers with three. The
//! fake's routes under `/real` answer with [`PROVIDER_HEADERS`]; the cross-check's real-headers
//! table sends [`SDK_HEADERS`] (`callgrind.sh`'s `pass-real` kind sends the same from Python).

/// What the openai SDK (Python, 3.57.0) sends besides the body, its host, length and content
/// type (the load tools send those), as a capture of its request shows them; the key goes as
/// each target's own authorization.
pub const SDK_HEADERS: [(&str, &str); 13] = [
    ("accept-encoding", "gzip, deflate"),
    ("connection", "keep-alive"),
    ("accept", "application/json"),
    ("user-agent", "OpenAI/Python 3.57.0"),
    ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "3.57.0"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.11.7"),
    ("x-stainless-async", "false"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-read-timeout", "600"),
];

/// The headers OpenAI's API reference lists on its answers (organization, processing time, API
/// version, request id, the six rate-limit ones) and those its CDN adds, with values of their
/// usual lengths.
pub const PROVIDER_HEADERS: [(&str, &str); 18] = [
    ("openai-organization", "user-abc123def456ghi789jkl0"),
    ("openai-processing-ms", "412"),
    ("openai-project", "proj_AbCdEfGhIjKlMnOpQrStUvWx"),
    ("openai-version", "2020-10-01"),
    ("x-request-id", "req_0123456789abcdef0123456789abcdef"),
    ("x-ratelimit-limit-requests", "10000"),
    ("x-ratelimit-limit-tokens", "30000000"),
    ("x-ratelimit-remaining-requests", "9999"),
    ("x-ratelimit-remaining-tokens", "29999986"),
    ("x-ratelimit-reset-requests", "6ms"),
    ("x-ratelimit-reset-tokens", "0s"),
    ("access-control-expose-headers", "X-Request-ID"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
    ("cf-cache-status", "DYNAMIC"),
    ("x-content-type-options", "nosniff"),
    ("server", "cloudflare"),
    ("cf-ray", "8f1e2d3c4b5a6978-AMS"),
    ("alt-svc", "h3=\":443\"; ma=86400"),
];
