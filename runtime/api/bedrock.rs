//! Bedrock's Converse / ConverseStream wire bodies.
