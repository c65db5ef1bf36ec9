"""Built-in handler types, registered through the same entry-point group as any other."""
