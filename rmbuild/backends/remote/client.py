"""The HTTP side of a remote upstream: an OpenAI-compatible server (vLLM, TGI, llama.cpp,
furiosa-llm serve, NIM, another ``rmbuild serve``) reached with httpx.

The API key is read from the environment variable the target names when a request is made; it
is never stored, logged or put in a message. Every failure is an RmbuildError saying which
upstream and what to do: unreachable or answering 5xx is BackendUnavailable (exit 7: the
device is not there), a refusal of the request itself (4xx) is an UpstreamRefused carrying the
upstream's status and message.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rmbuild.errors import BackendUnavailable, RmbuildError, SpecError

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The probe is a small GET: a server that takes longer is not answering.
PROBE_TIMEOUT_S = 10.0


class UpstreamRefused(RmbuildError):
    """The upstream answered a request with a 4xx: the request's fault, not the device's."""

    code = "upstream-refused"
    exit_code = 2

    def __init__(self, message: str, *, status: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status = status


def base_url(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` -> the root
    (without ``/v1``): every request adds its own ``/v1/...`` path."""
    url = url.strip().rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def check_url(url: object, *, field: str = "url") -> str:
    """The URL, or SpecError (exit 3) for one that is not http(s) or that carries a secret
    (a user name, password or query: it would be stored with the artifact and shown)."""
    if not isinstance(url, str) or not url.strip():
        raise SpecError(
            f"{field}: the upstream's URL is required, e.g. http://gpu-box:8000/v1",
            field=field,
        )
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(
            f"{field}: {url!r} is not an http(s) URL with a host",
            field=field,
            hint="e.g. http://gpu-box:8000/v1",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise SpecError(
            f"{field}: the URL carries a user, password, query or fragment; rmbuild stores the "
            "URL with the artifact and shows it, so it takes none",
            field=field,
            hint="put the key in an environment variable and name it in api_key_env",
        )
    return url.strip()


def check_key_env(name: object, *, field: str = "api_key_env") -> str | None:
    """The variable's name (or None), refusing anything that is not a variable name: the key
    itself must never be written where the artifact's key and metadata would store it."""
    if name is None:
        return None
    if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
        raise SpecError(
            f"{field}: give the NAME of the environment variable that holds the API key "
            "(e.g. VLLM_API_KEY), never the key itself: flags are stored with the artifact",
            field=field,
        )
    return name


def display(url: str) -> str:
    """The URL as shown in messages, metrics and /health (scheme, host, port, path)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"


@dataclass
class Upstream:
    """One OpenAI-compatible server: ``url`` (with or without ``/v1``), the environment
    variable holding its key, and the timeout of a request."""

    url: str
    api_key_env: str | None = None
    timeout: float = 600.0

    @property
    def root(self) -> str:
        return base_url(self.url)

    @property
    def display(self) -> str:
        return display(self.root)

    def headers(self) -> dict[str, str]:
        """The request headers; the key is read from the environment now (never kept)."""
        headers = {"Accept": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise BackendUnavailable(
                    f"the upstream {self.display} needs its API key in ${self.api_key_env}, "
                    "which is not set",
                    hint=f"export {self.api_key_env}=... (the key the server was started with)",
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _unreachable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"the upstream {self.display} is not reachable: {type(exc).__name__}: {str(exc)[:300]}",
            hint="start the server (or check the URL and the network), or serve another target",
        )

    def _check(self, response: Any, what: str) -> None:
        if response.status_code < 400:
            return
        try:
            body = response.json()
            error = body.get("error", body) if isinstance(body, dict) else body
            message = error.get("message", error) if isinstance(error, dict) else error
        except ValueError:
            message = response.text[:300]
        text = f"the upstream {self.display} answered {what} with {response.status_code}: {message}"
        if response.status_code in (401, 403):
            raise BackendUnavailable(
                text,
                hint=f"set ${self.api_key_env or 'THE_KEY_VARIABLE'} to the server's key (and "
                "api_key_env in the target to that variable's name)",
            )
        if response.status_code < 500 and response.status_code != 429:
            raise UpstreamRefused(text, status=response.status_code)
        raise BackendUnavailable(text, hint="the upstream server failed; see its log")

    def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: the probe (reachable and answering -> available)."""
        import httpx

        try:
            response = httpx.get(
                f"{self.root}/v1/models", headers=self.headers(), timeout=PROBE_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        self._check(response, "GET /v1/models")
        try:
            data = response.json().get("data")
        except (ValueError, AttributeError):
            data = None
        if not isinstance(data, list):
            raise BackendUnavailable(
                f"the upstream {self.display} answered GET /v1/models without a model list: "
                f"{response.text[:200]}",
                hint="is it an OpenAI-compatible server?",
            )
        return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]

    def find_model(self, wanted: str | None) -> dict[str, Any]:
        """The entry of /v1/models serving ``wanted`` (None: the only one listed)."""
        from rmbuild.errors import IncompatibleArtifact

        listed = self.models()
        ids = [m["id"] for m in listed]
        if wanted is None:
            if len(listed) == 1:
                return listed[0]
            raise IncompatibleArtifact(
                f"the upstream {self.display} serves {len(listed)} models; name one",
                context=[f"models: {', '.join(ids) or 'none'}"],
                hint="set flags.model of the target to one of them",
            )
        for entry in listed:
            if entry["id"] == wanted:
                return entry
        raise IncompatibleArtifact(
            f"the upstream {self.display} does not serve model {wanted!r}",
            context=[f"models: {', '.join(ids) or 'none'}"],
            hint="set flags.model of the target to one of them",
        )

    def complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/completions`` without streaming: the response's JSON."""
        import httpx

        try:
            response = httpx.post(
                f"{self.root}/v1/completions",
                json=payload,
                headers=self.headers(),
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        self._check(response, "POST /v1/completions")
        return response.json()

    def stream(self, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """``POST /v1/completions`` with ``stream: true``: each Server-Sent Event's JSON, up
        to ``[DONE]``; an error event in the stream raises."""
        import httpx

        try:
            with httpx.stream(
                "POST",
                f"{self.root}/v1/completions",
                json={**payload, "stream": True},
                headers=self.headers(),
                timeout=self.timeout,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response, "POST /v1/completions")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    event = json.loads(data)
                    if isinstance(event, dict) and "error" in event:
                        error = event["error"]
                        message = error.get("message") if isinstance(error, dict) else error
                        raise BackendUnavailable(
                            f"the upstream {self.display} ended its stream with an error: {message}"
                        )
                    yield event
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
