//! The web console at `/ui`: a small build-free app (HTML, CSS and JS modules from `ui/`)
//! compiled into the binary, so the server needs no files beside it and the page loads
//! nothing from anywhere else. The page signs in with a token and calls the controller and
//! the services like any other client; these routes themselves serve only static files.

use super::AppState;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset { name: $name, content_type: $content_type, body: include_bytes!(concat!("../../ui/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `ui/`; the first is the page itself.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("sse.js", JS),
    asset!("chart.js", JS),
    asset!("locate.js", JS),
    asset!("sessions.js", JS),
    asset!("apps.js", JS),
    asset!("install.js", JS),
    asset!("logs.js", JS),
    asset!("usage.js", JS),
    asset!("keys.js", JS),
    asset!("playground.js", JS),
];

/// Only this origin's scripts, styles and API: a console that holds a token runs nothing else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/ui`, `/ui/` and `/ui/{file}` for each embedded file. Exact paths only (no wildcard), so
/// a workspace named `ui` still reaches its services.
pub fn routes() -> Router<AppState> {
    let page = &ASSETS[0];
    let mut router = Router::new().route("/ui", get(move || async move { serve(page) }));
    router = router.route("/ui/", get(move || async move { serve(page) }));
    for asset in ASSETS {
        router = router.route(&format!("/ui/{}", asset.name), get(move || async move { serve(asset) }));
    }
    router
}

fn serve(asset: &'static Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            // Revalidate every time: a new binary brings new files under the same names.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        asset.body,
    )
        .into_response()
}
