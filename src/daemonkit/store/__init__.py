"""Files the supervisor owns: the lock, the pid record, state, events and program logs."""
