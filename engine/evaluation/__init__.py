"""Judging colorizers: per-frame pixel metrics, FID/FVD/LPIPS, the whole-shot report
with its drift plot, contact sheets, seeded synthetic shots (`synthetic`, and
`synthetic_cases`: the cases paint was not built around), the floor a colorizer must
beat (`naive`: frame-to-frame propagation, no memory) and the `longanim demo` run.

Used by the CLI's `eval` and `demo` commands and by bench/; nothing the engine runs
imports it.
"""
