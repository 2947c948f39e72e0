"""The Windows lane (run inside Wine by tests/test_windows_lane.py)."""
