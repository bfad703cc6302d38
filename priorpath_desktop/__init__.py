"""PriorPath Desktop: the Qt application around `trainer` (built in a later milestone)."""
