//! OpenAI-shaped chat over translating providers (filled in below).
