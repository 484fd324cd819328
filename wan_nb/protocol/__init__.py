"""The shared vocabulary: events, the state reducer, snapshots, errors, the memory monitor and the display hook. Standard library only; every layer imports it."""
