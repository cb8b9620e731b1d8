"""The statistics report: an HTML page with charts, a CSV of every figure, and the weekly mail.

Written for people who never saw the code: Swedish labels by default (English on request), every
figure explained in plain words, axes with units. Everything in it comes from ``ReportStats`` —
aggregates and organisation names only, never a plan reference, a person or free text.

Folder layout::

    index.html        title, period, key figures, tables, charts, definitions
    charts/*.png      matplotlib (Agg), one chart per question
    figures.csv       metric, organisation, dimension, value, unit, label, organisation_name (UTF-8 with BOM,
                      so that Excel shows å, ä and ö)

Modules, each importing only those before it: ``words`` (labels and number formats), ``charts``
(matplotlib), ``page`` (HTML, CSV, Markdown, the folder), ``weekly`` (the weekly report and its mails).
All of them stand on ``sipflows.stats`` and ``sipflows.metrics``. This package exports what the CLI, the
flows and the tests use.
"""

from sipflows.report.charts import render_charts
from sipflows.report.page import CSV_COLUMNS, figures_csv, markdown_summary, table_rows, write_report
from sipflows.report.weekly import last_week_ending, weekly_report, weekly_report_drafts
from sipflows.report.words import key_figures

__all__ = [
    "CSV_COLUMNS",
    "figures_csv",
    "key_figures",
    "last_week_ending",
    "markdown_summary",
    "render_charts",
    "table_rows",
    "weekly_report",
    "weekly_report_drafts",
    "write_report",
]
