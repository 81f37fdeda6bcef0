"""``python -m wide_lightning.report``."""

from wide_lightning.report.command import main

main()
