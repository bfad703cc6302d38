"""Evaluation of generated tissue masks against real ones (paper Table 2, Fig. 1d, Fig. 3).

One module per job:

- `masksets`: find, read and check the mask files of a set (binary 0/255, one size).
- `inception`: the standard FID Inception-v3 weights (verified by hash), preprocessing, feature cache.
- `frechet`: FID and KID from Inception features.
- `distributions`: per-mask tissue fraction, boundary density and component count; KS and KL on them.
- `labelsets`: label maps of a set (class table, class fractions); per-class KS/KL and label-map FID.
- `prdc`: precision, recall, density and coverage (Naeem et al. 2020).
- `coverage`: the t-SNE map and the 3x3 grid analysis with local FID (Fig. 3).
- `plots`: the report's PNG figures (matplotlib, Agg only).
- `report`: runs everything for ``priorpath eval`` and writes the report folder.
"""
