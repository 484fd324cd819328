"""End to end across processes: scripts watched through a real server, the notebooks under nbval."""
