"""``rmbuild serve``: one logical model behind an OpenAI-compatible HTTP endpoint.

The pieces, each a module:

* :mod:`~rmbuild.serve.engine` owns the loaded session in one worker thread and interleaves
  the running requests step by step (every request keeps its own KV cache), so concurrent
  users share the device instead of queueing behind one another;
* :mod:`~rmbuild.serve.protocol` is the request and response shapes of OpenAI's API, and its
  error object;
* :mod:`~rmbuild.serve.app` is the FastAPI application: endpoints, Server-Sent Events, the API
  key, back-pressure;
* :mod:`~rmbuild.serve.metrics` exports Prometheus metrics under vLLM's names with an
  ``rmbuild:`` prefix, so a vLLM dashboard works by changing the prefix;
* :mod:`~rmbuild.serve.model` resolves what the user named (a model.yaml, a model name, an
  alias, an artifact id) to the stored artifacts that can run here, best first.

FastAPI, uvicorn and prometheus-client come with the ``serve`` extra and are imported only by
this package, so the rest of rmbuild starts without them.
"""
