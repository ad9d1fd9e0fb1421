//! Anthropic (being written in this session; replaced before it lands).
