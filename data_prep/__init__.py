"""Offline preparation of raw interaction data for linrec_jax.

`python -m data_prep.prepare` (or `prepare.prepare_dataset` from Python)
reads a raw dataset (`readers`, on top of the strict parser in `parsing`),
sorts and filters it (`filters`, `pipeline`, with per-dataset `presets`) and
writes the prepared format of docs/ARCHITECTURE.md atomically (`writer`).
`download` fetches the official MovieLens-1M archive when no input is given.
"""
