"""The data stage: text or published image datasets -> cleaned, split pairs -> images -> Parquet + card.

Modules, in pipeline order: `config` (DataConfig), `sources` (one reader per source kind), `published`
(MIT-10M, OCRMT30K and manifests in their own layouts), `images` (reading from folders and zips,
checks, crops), `clean` (tags, placeholders, filters), `split` (leak-free hash split), `fonts` (a
covering font per script), `render` (seeded Pillow rendering), `build` (`build_dataset`, parts,
`write_dataset`), `card` (`write_card`), `fingerprint` (the files' content in the artifact key).
"""
