"""Code the experiment apps share (no app imports another app: they import from here).

- :mod:`.problem`: the data set, its statistics and task structure, the rate grid.
- :mod:`.checkpoint`: results tagged with the run's resolved config (resume after a kill).
- :mod:`.fig4`: the robust learning-rate statistics of Fig. 4 per depth (compressed or
  full-width engine), their summary and figures (used by ``depth_sweep`` and ``lr_sweep``).
- :mod:`.plots`: small plotting helpers.
"""
