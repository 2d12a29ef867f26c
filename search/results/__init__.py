"""The results room: what a study found: export of the best config, the report and its figures, replay
of learning curves. Read-only on the study."""
