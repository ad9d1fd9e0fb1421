//! Typed request bodies of the core operations. Unknown fields stay in `extra`, so a
//! request passes through with everything a newer client sent.

pub mod anthropic;
pub mod openai;
