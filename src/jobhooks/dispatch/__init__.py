"""Running handlers: one attempt at a time, with its time limit."""
