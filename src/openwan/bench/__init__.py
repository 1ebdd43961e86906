"""Evaluation: video metrics (weight-free and model-based), benchmark suites and reports (`openwan bench`)."""
