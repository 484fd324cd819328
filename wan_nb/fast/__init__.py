"""Running faster or smaller: the memory/time planner, cache modes, attention backends, compile options."""
