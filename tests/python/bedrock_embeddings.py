"""The real openai SDK reads ferrolite's answers for Bedrock embedding deployments
(FERROLITE_BASE_URL, FERROLITE_TOKEN set by tests/it/bedrock_embeddings.rs)."""
import os, openai
client = openai.OpenAI(api_key=os.environ["FERROLITE_TOKEN"], base_url=os.environ["FERROLITE_BASE_URL"])
titan = client.embeddings.create(model="titan-v1", input=["the quick brown fox", "hello"])
assert titan.model == "titan-v1", titan.model
assert [d.index for d in titan.data] == [0, 1], titan.data
assert all(len(d.embedding) == 1536 for d in titan.data)
assert titan.usage.prompt_tokens == titan.usage.total_tokens == 5, titan.usage
v2 = client.embeddings.create(model="titan-v2", input="short", dimensions=256, encoding_format="float")
assert len(v2.data[0].embedding) == 256
assert abs(sum(x * x for x in v2.data[0].embedding) - 1.0) < 1e-3, "normalized by default"
cohere = client.embeddings.create(model="cohere-en", input=["a b", "c"], extra_body={"input_type": "clustering"})
assert len(cohere.data) == 2 and len(cohere.data[1].embedding) == 1024
assert cohere.usage.prompt_tokens == 3, cohere.usage
try:
    client.embeddings.create(model="titan-v1", input=[""])
    raise SystemExit("an empty text should fail")
except openai.BadRequestError as e:
    assert "minLength" in str(e), e
print("all checks passed")
