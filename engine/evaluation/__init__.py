"""Judging colorizers: per-frame pixel metrics, FID/FVD/LPIPS, the whole-shot report
with its drift plot, contact sheets, seeded synthetic shots and the `longanim demo` run.

Used by the CLI's `eval` and `demo` commands and by bench/; nothing the engine runs
imports it.
"""
