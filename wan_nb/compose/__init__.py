"""Many runs as one: sweeps, grids (axes, reuse, the labelled film) and reruns."""
