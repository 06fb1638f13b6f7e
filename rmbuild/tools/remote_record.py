"""The record of a remote upstream, as a command-line tool: writes ``remote.json``.

A ``remote-openai`` target builds no model; its artifact is this record of the endpoint. The
backend asked the upstream's ``/v1/models`` before this runs (in rmbuild's process, where the
API key may be read) and passes what it reported as arguments, so this file only writes them
down: no network, no key, the same bytes for the same arguments. It imports nothing from
rmbuild (the toolchain's interpreter runs it); its sha256 is part of the stage's key.

    python remote_record.py --url URL --reported-model ID [--model ID] [--api-key-env NAME]
        [--max-model-len N] --output out/remote.json
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the upstream's URL")
    parser.add_argument("--model", default=None, help="the model id the target asked for")
    parser.add_argument("--reported-model", required=True, help="the id /v1/models reported")
    parser.add_argument("--api-key-env", default=None, help="the variable holding the key")
    parser.add_argument("--max-model-len", type=int, default=None, help="its context limit")
    parser.add_argument("--output", required=True, help="where to write the record")
    args = parser.parse_args(argv)
    record = {
        "kind": "remote-openai",
        "url": args.url,
        "model": args.model or args.reported_model,
        "reported_model": args.reported_model,
        "api_key_env": args.api_key_env,
        "max_model_len": args.max_model_len,
    }
    with open(args.output, "w", encoding="utf-8") as out:
        json.dump(record, out, indent=2, sort_keys=True)
        out.write("\n")
    print(f"recorded upstream {args.url} serving {record['model']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
