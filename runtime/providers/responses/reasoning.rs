//! A reasoning item's `encrypted_content`: the thinking blocks a provider signed, carried
//! through the client and back (base64 of their JSON, with who signed them), so that a later
//! request hands them to the provider again as the thinking of the turn they came with.
//! Signatures only mean something to the family that made them (Claude's are the same on
//! Anthropic's API, Bedrock and Vertex AI), so blocks another family signed are left out.

use crate::api::openai::ThinkingBlock;
use crate::exchange::parse_json;
use crate::providers::Provider;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// What `encrypted_content` holds.
#[derive(Serialize, Deserialize)]
struct Sealed<'a> {
    /// The family that signed the blocks.
    signer: Cow<'a, str>,
    blocks: Cow<'a, [ThinkingBlock]>,
}

/// The family whose signatures a provider's deployments make and take.
pub fn signer(provider: Provider) -> &'static str {
    match provider {
        Provider::Anthropic | Provider::Bedrock | Provider::VertexAiAnthropic => "claude",
        Provider::Gemini | Provider::VertexAi => "gemini",
        other => other.as_str(),
    }
}

/// Whether a block is worth handing back: signed, or redacted.
pub fn kept(block: &ThinkingBlock) -> bool {
    match block {
        ThinkingBlock::Thinking { signature, .. } => signature.as_deref().is_some_and(|s| !s.is_empty()),
        ThinkingBlock::RedactedThinking { .. } => true,
        ThinkingBlock::Other(_) => false,
    }
}

/// `encrypted_content` for `blocks` signed by `signer` (none when there is nothing to hand back).
pub fn seal(signer: &str, blocks: &[ThinkingBlock]) -> Option<String> {
    if blocks.is_empty() {
        return None;
    }
    let sealed = Sealed { signer: Cow::Borrowed(signer), blocks: Cow::Borrowed(blocks) };
    serde_json::to_vec(&sealed).ok().map(|json| STANDARD.encode(json))
}

/// The blocks of an `encrypted_content` that `signer` signed; none for another family's, or
/// for content ferrolite did not seal (OpenAI's own, when a conversation changes models).
pub fn open(signer: &str, encrypted: &str) -> Vec<ThinkingBlock> {
    let Ok(json) = STANDARD.decode(encrypted.trim()) else { return Vec::new() };
    match parse_json::<Sealed<'_>>(&json) {
        Ok(sealed) if sealed.signer == signer => sealed.blocks.into_owned().into_iter().filter(kept).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_blocks_open_for_their_signer_only() {
        let blocks =
            vec![ThinkingBlock::signed("Paris.", "sig"), ThinkingBlock::RedactedThinking { data: "opaque".into() }];
        let sealed = seal("claude", &blocks).unwrap();
        assert_eq!(open("claude", &sealed), blocks);
        assert_eq!(open("gemini", &sealed), Vec::new());
        assert_eq!(open("claude", "gAAAAABo-openai-own"), Vec::new());
        assert_eq!(open("claude", &STANDARD.encode("[1]")), Vec::new());
        assert_eq!(seal("claude", &[]), None);
        assert_eq!(signer(Provider::Bedrock), signer(Provider::Anthropic));
    }

    #[test]
    fn only_signed_and_redacted_blocks_are_kept() {
        assert!(kept(&ThinkingBlock::signed("", "s")));
        assert!(!kept(&ThinkingBlock::text("unsigned")));
        assert!(!kept(&ThinkingBlock::signed("t", "")));
    }
}
