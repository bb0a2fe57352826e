"""orch: labelled issues in, isolated agent runs out, draft pull requests back."""

__version__ = "0.1.0"
