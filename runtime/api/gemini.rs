//! Gemini's generateContent / streamGenerateContent and batchEmbedContents wire bodies.
