"""Every report fastrl writes, in one package.

- :mod:`fastrl.reports.writer`: the :class:`~fastrl.reports.writer.Document` model and its
  two renderings, report.md and a self-contained report.html.
- :mod:`fastrl.reports.plots`: matplotlib (Agg) at fixed sizes, colours, training curves.
- :mod:`fastrl.reports.format`: number, probability and interval formats, strict JSON.
- :mod:`fastrl.reports.files`: the run folder every backtest report writes.
- One document builder per market kind: :mod:`fastrl.reports.single` (one or more symbols
  traded one by one) and :mod:`fastrl.reports.portfolio` (one portfolio over many symbols).

The tuning study, PBT and walk-forward reports (:mod:`fastrl.tune.report_study`,
:mod:`fastrl.tune.report_pbt`, :mod:`fastrl.walkforward.report`) build on the shared
modules here, never on a kind's document builder.
"""
