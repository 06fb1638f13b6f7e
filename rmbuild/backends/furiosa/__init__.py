"""FuriosaAI RNGD backend: HF folder -> ``fxb build`` (furiosa-llm 2026.4) -> .fxb + HF files."""
