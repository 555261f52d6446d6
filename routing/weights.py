"""The criteria a ``weighted`` strategy can weigh (supervisor-set weights, by these keys)."""

WEIGHT_KEYS = ("skill", "idle", "occupancy", "group", "priority")
"""skill match, idle time, occupancy fairness, group preference, call priority."""
