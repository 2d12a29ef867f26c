"""The run room: the worker loop that runs trials (search.trial) against a study, several workers at
once, their progress, and the dashboard over a running study."""
