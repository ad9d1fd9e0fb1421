"""An agent's turn late in a session: its history of tool calls and results, and its tools (a
112 KB chat body of 181 messages and 20 tools). benches/callgrind.sh counts it and
scripts/pgo-train.py trains the profile-guided build on it; the same seed makes the same body."""

import json
import random


def long_conversation():
    rng = random.Random(7)
    words = "the quick brown fox jumps over a lazy dog while agents call tools and read files".split()
    text = lambda n: " ".join(rng.choice(words) for _ in range(n))
    messages = [{"role": "system", "content": text(300)}]
    for i in range(60):
        call = {"id": f"call_{i}", "type": "function",
                "function": {"name": "read_file", "arguments": json.dumps({"path": f"src/file{i}.rs"})}}
        messages += [
            {"role": "user", "content": text(200)},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{i}", "content": 'fn main() {\n    println!("hello");\n}\n' * 10},
        ]
    tools = [{"type": "function", "function": {"name": f"tool{i}", "description": "does a thing " * 20,
              "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}}
             for i in range(20)]
    return {"model": "pass", "messages": messages, "tools": tools, "max_tokens": 16}
