"""The supervisor: an event loop that runs, restarts, readies and stops programs."""
