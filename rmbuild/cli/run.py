"""``rmbuild run --artifact ID --prompt ...``: stream generated text."""

from __future__ import annotations

import sys
from typing import Any

import click


@click.command("run")
@click.option("-a", "--artifact", "ref", required=True, help="Artifact id, unique prefix or alias.")
@click.option("-p", "--prompt", default="The future of AI is", show_default=True)
@click.option("-n", "--max-tokens", default=32, show_default=True, type=click.IntRange(0))
@click.option(
    "--temperature", default=0.0, show_default=True, type=click.FloatRange(0), help="0 = greedy."
)
@click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--seed", type=int, help="Seed for sampling.")
@click.option("--device", help="Run on this device instead of the profile's (e.g. CPU, GPU, NPU).")
@click.option(
    "--max-model-len",
    type=click.IntRange(1),
    help="Context limit, prompt + --max-tokens (default: the model's declared maximum or the "
    "artifact's compiled one, whichever is smaller). Larger than the declared maximum only for "
    "rotary/ALiBi models, never past the compiled one.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Re-hash every file of the artifact before loading (the default check compares "
    "each file's inode, mtime and size with what was recorded at build time).",
)
@click.option(
    "--trust",
    metavar="POLICY",
    help='Trust policy: "signed-by:KEY.pub" refuses an artifact without a signature by that '
    'key that holds (exit 6); "none" turns a configured one off [env: RMBUILD_TRUST; config: '
    "trust].",
)
@click.option("--json", "as_json", is_flag=True, help="Print text and stats as JSON at the end.")
@click.pass_obj
def command(
    app: Any,
    ref: str,
    prompt: str,
    max_tokens: int,
    temperature: float,
    top_p: float,
    seed: int | None,
    device: str | None,
    max_model_len: int | None,
    verify: bool,
    trust: str | None,
    as_json: bool,
) -> None:
    """Generate text from an artifact, streaming tokens to stdout.

    A prompt plus --max-tokens past the context limit is refused before the model runs
    (exit 6, saying how many tokens still fit).
    """
    import time

    from rmbuild.loading import load
    from rmbuild.runtime.sampling import SamplingParams
    from rmbuild.storage.store import open_store

    t0 = time.perf_counter()
    options = {"device": device} if device else {}
    # Read-only index: run works on a full disk; a damaged artifact is refused
    # with exit 6 before any backend reads it.
    store = open_store(app.store_path, app.index_url, read_only=True)
    session = load(
        ref, store=store, verify=verify, max_model_len=max_model_len, trust=trust, **options
    )
    load_s = time.perf_counter() - t0
    params = SamplingParams(temperature=temperature, top_p=top_p, seed=seed)
    pieces = []
    with session:
        # The request's checks (context limit, empty prompt) run here, before the prompt is
        # echoed: a refusal prints no text.
        stream = session.stream(prompt, max_tokens, params)
        if not as_json:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        for piece in stream:
            pieces.append(piece)
            if not as_json:
                sys.stdout.write(piece)
                sys.stdout.flush()
        stats = session.last_stats
    if as_json:
        from rmbuild.cli._output import emit_json

        emit_json(
            {
                "artifact": session.info["artifact"],
                "prompt": prompt,
                "text": "".join(pieces),
                "prompt_tokens": stats.prompt_tokens,
                "new_tokens": stats.new_tokens,
                "max_model_len": session.max_model_len,
                "stopped": stats.stopped,
                "load_s": round(load_s, 4),
                "prefill_s": round(stats.prefill_s, 4),
                "decode_s": round(stats.decode_s, 4),
                "tokens_per_s": round(stats.tokens_per_s, 1),
            }
        )
        return
    sys.stdout.write("\n")
    click.echo(
        f"[{stats.new_tokens} tokens, {stats.tokens_per_s:.0f} tok/s, load "
        f"{load_s:.2f} s, {session.info['backend']} on {session.info['device']}, "
        f"artifact {session.info['artifact'][:12]}]",
        err=True,
    )
