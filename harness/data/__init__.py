"""Datasets of the benchmark: MovieLens downloads and local copies, synthetic sets, preparation
(min-ratings filter, dense ids, leave-one-out) and the counter-based negative sampling.

Entry points: `harness.data.prepare.load_dataset` (-> `PreparedData`) and the generators of
`harness.data.sampling`. Nothing is imported here, so `import harness.data` stays cheap.
"""
