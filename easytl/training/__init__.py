"""The plan, the trainer and its callbacks, schedules, the feature cache."""
