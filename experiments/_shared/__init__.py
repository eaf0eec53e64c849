"""Code the experiment apps share (no app imports another app: they import from here).

- :mod:`.problem`: the data set, its statistics and task structure, the rate grid.
- :mod:`.checkpoint`: results tagged with the run's resolved config (resume after a kill).
- :mod:`.depth_loop`: the depth loop of Fig. 4, robust learning-rate statistics per depth
  (compressed or full-width engine) and their summary (used by ``depth_sweep`` and ``lr_sweep``).
- :mod:`.plots`: the figures apps share or that take more than a summary, each taking a run's
  results (a summary dict, or a result dataclass), never a config: :mod:`.plots.fig4`,
  :mod:`.plots.pretraining`, :mod:`.plots.init_comparison`.
"""
