"""The real openai SDK against ferrolite forwarding to a fake OpenAI upstream.

Run by tests/it/openai_provider.rs with FERROLITE_BASE_URL and FERROLITE_TOKEN set. The app's
models (gpt-4o, embed, tts, whisper, dall-e, moderation) are all `openai/...` deployments whose
api_base is tests/it/fake_openai.rs, which answers deterministically: chat echoes the last user
message, speech is speech_bytes(input), transcriptions report the file's size and FNV-1a hash.
"""

import json
import os

import openai

client = openai.OpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])


def fnv64_hex(data: bytes) -> str:
    """64-bit FNV-1a, lowercase hex: the same function as fake_openai::fnv64_hex."""
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def speech_bytes(text: str) -> bytes:
    """b"ID3" then the input's UTF-8 bytes repeated to 48 KiB: what the fake answers."""
    total = 48 * 1024
    body = text.encode()
    return b"ID3" + (body * (total // len(body) + 1))[: total - 3]


def audio_clip(size: int) -> bytes:
    """A deterministic binary file (an LCG's high bytes): every byte value, CR/LF and dashes included."""
    out = bytearray(size)
    x = 12345
    for i in range(size):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (x >> 16) & 0xFF
    return bytes(out)


models = [m.id for m in client.models.list()]
assert models == ["gpt-4o", "embed", "tts", "whisper", "dall-e", "moderation"], models
print("models:", models)

response = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello!"}])
answer = response.choices[0].message.content
assert answer == "echo: Hello!", response
assert response.choices[0].finish_reason == "stop"
assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens > 0, response.usage
print("chat:", answer)

chunks = []
usage = None
stream = client.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "user", "content": "Hello!"}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    if chunk.choices and chunk.choices[0].delta.content:
        chunks.append(chunk.choices[0].delta.content)
assert len(chunks) >= 3, chunks
assert "".join(chunks) == answer, chunks
assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0, usage
print("stream:", len(chunks), "chunks")

completion = client.completions.create(model="gpt-4o", prompt="Once upon a time", max_tokens=20)
assert completion.choices[0].text == "echo: Once upon a time", completion
streamed = "".join(
    c.choices[0].text for c in client.completions.create(model="gpt-4o", prompt="Once upon a time", stream=True) if c.choices
)
assert streamed == completion.choices[0].text, streamed
print("completions ok")

# The SDK asks for base64 by default and decodes it; float must give the same numbers.
embedding = client.embeddings.create(model="embed", input=["hello", "world"])
assert [d.index for d in embedding.data] == [0, 1], embedding
assert len(embedding.data[0].embedding) == 8, embedding.data[0]
assert embedding.data[0].embedding != embedding.data[1].embedding
floats = client.embeddings.create(model="embed", input=["hello", "world"], encoding_format="float")
assert [d.embedding for d in floats.data] == [d.embedding for d in embedding.data], (floats, embedding)
print("embeddings ok")

moderation = client.moderations.create(model="moderation", input="I love gardening")
assert moderation.results and moderation.results[0].flagged is False, moderation
print("moderation ok")

SPEECH_TEXT = "The quick brown fox jumps over the lazy dog. Ünïcödé too."
speech = client.audio.speech.create(model="tts", voice="alloy", input=SPEECH_TEXT)
audio = speech.content
assert len(audio) == 48 * 1024, len(audio)
assert audio == speech_bytes(SPEECH_TEXT), "speech bytes differ"
print("speech ok:", len(audio), "bytes")

clip = audio_clip(200 * 1024)
transcription = client.audio.transcriptions.create(model="whisper", file=("clip.mp3", clip, "audio/mpeg"))
assert transcription.text == "transcribed clip.mp3", transcription
extra = transcription.model_extra or {}
assert extra.get("file_bytes") == len(clip), extra
assert extra.get("file_fnv64") == fnv64_hex(clip), (extra, fnv64_hex(clip))
raw = client.audio.transcriptions.with_raw_response.create(
    model="whisper", file=("clip.mp3", clip, "audio/mpeg"), response_format="json"
)
raw_json = json.loads(raw.http_response.content)
assert raw_json["file_bytes"] == len(clip) and raw_json["file_fnv64"] == fnv64_hex(clip), raw_json
print("transcription ok: upstream model field", raw_json.get("model"))

translation = client.audio.translations.create(model="whisper", file=("note.wav", clip[:4096], "audio/wav"))
assert translation.text == "translated note.wav", translation
assert (translation.model_extra or {}).get("file_fnv64") == fnv64_hex(clip[:4096]), translation
print("translation ok")

image = client.images.generate(model="dall-e", prompt="a red fox in the snow")
assert image.data[0].url == "https://images.invalid/1.png", image
assert image.data[0].revised_prompt == "a red fox in the snow", image
print("image ok")

batch_lines = [
    {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": f"Question {i}"}]}}
    for i in range(3)
]
jsonl = "".join(json.dumps(line) + "\n" for line in batch_lines).encode()
uploaded = client.files.create(file=("requests.jsonl", jsonl), purpose="batch")
assert uploaded.id.startswith("file-"), uploaded
assert uploaded.object == "file" and uploaded.purpose == "batch", uploaded
assert uploaded.bytes == len(jsonl) and uploaded.filename == "requests.jsonl", uploaded
listed = [f.id for f in client.files.list()]
assert uploaded.id in listed, listed
assert client.files.retrieve(uploaded.id).bytes == len(jsonl)
content = client.files.content(uploaded.id)
assert content.content == jsonl, content.content
print("files ok:", uploaded.id)

batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
assert batch.id.startswith("batch_") and batch.object == "batch", batch
assert batch.status == "validating" and batch.input_file_id == uploaded.id, batch
assert batch.endpoint == "/v1/chat/completions" and batch.completion_window == "24h", batch
assert batch.request_counts is None or batch.request_counts.total == len(batch_lines), batch
again = client.batches.retrieve(batch.id)
assert again.id == batch.id and again.input_file_id == uploaded.id and again.status == "validating", again
print("batches ok:", batch.id)

print("all checks passed")
