"""One generation and its queue: tasks, the event bus, engines, the run itself, the pipeline holder, parameters, the LoRA registry, ETA, the run recorder."""
