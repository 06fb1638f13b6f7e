"""The ``remote-openai`` backend: an OpenAI-compatible server as a device (see plugin.py)."""
