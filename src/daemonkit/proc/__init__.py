"""Processes: identity (pid + create time), detached spawns, Windows job objects and command lines."""
