"""A library over the platform: what several services do with what a customer wrote. `pii`
redacts personal data before text leaves for Claude and restores it after; `summary` is the
extractive summary of a conversation (escalation packets, the learner's resolved cases and KB
proposals, delivery's notes)."""
