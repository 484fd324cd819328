"""Run folders on disk: the events journal, history, recipes, a run's kept inputs, atomic writes. Standard library only."""
