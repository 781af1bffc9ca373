"""HTTP entry points: thin; they turn requests into use-case calls."""
