"""Where a run's time and money went, and how to size it (pure): the rules the tune worker, `execsight
run` and the dashboard share (time breakdown, right-sizing, regression, task definitions, config export)."""
