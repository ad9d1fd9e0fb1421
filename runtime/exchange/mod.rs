//! The exchange of one request and its answer, in the terms every layer shares: the body as
//! read ([`Payload`], [`MultipartBody`], [`whole`]), the answer ([`Outcome`], [`Usage`]) and the error it
//! may end in ([`ApiError`]). A leaf: it imports no other layer.

mod answer;
mod body;
mod error;
pub mod header_name;
pub mod header_value;
pub mod multipart;
mod payload;
pub mod usage;

pub use answer::{Outcome, Usage};
pub use body::{whole, Whole, WholeError};
pub use error::ApiError;
pub use multipart::MultipartBody;
pub use payload::{object_field, parse_json, JsonBody, Payload};
