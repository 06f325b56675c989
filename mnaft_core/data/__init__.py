"""The data stage: parallel text -> cleaned, hash-split pairs -> rendered text images -> Parquet + card.

Modules, in pipeline order: `config` (DataConfig), `sources` (one reader per source kind), `clean`
(tags, placeholders, filters), `split` (leak-free hash split), `fonts` (a covering font per script),
`render` (seeded Pillow rendering), `build` (`build_dataset`, `write_dataset`), `card` (`write_card`).
"""
