"""HTTP layer: routes, wire formats and input validation. Delegates to batching/."""
