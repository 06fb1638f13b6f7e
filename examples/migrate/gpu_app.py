"""The migration example (examples/migrate/README.md): one transformers app, on a GPU with
PyTorch (gpu_app.py) and on an artifact rmbuild built (rmbuild_app.py). The two files differ
only in the import and in what from_pretrained is given. Run from the repository root."""

from transformers import AutoModelForCausalLM, AutoTokenizer, TextStreamer, set_seed

tokenizer = AutoTokenizer.from_pretrained("examples/tiny-llama/model")
model = AutoModelForCausalLM.from_pretrained("examples/tiny-llama/model").to("cuda")

# One prompt, greedy, printed as it is generated.
inputs = tokenizer("The future of AI is", return_tensors="pt").to(model.device)
streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
model.generate(**inputs, max_new_tokens=30, do_sample=False, streamer=streamer)

# A batch of prompts of different lengths (left padding), beam search.
prompts = ["Once upon a time", "A compiler is"]
batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
out = model.generate(**batch.to(model.device), max_new_tokens=20, num_beams=4, do_sample=False)
for text in tokenizer.batch_decode(out, skip_special_tokens=True):
    print(text)

# Sampling, with a seed.
set_seed(0)
out = model.generate(**inputs, max_new_tokens=20, do_sample=True, temperature=0.8, top_k=50)
print(tokenizer.decode(out[0], skip_special_tokens=True))
