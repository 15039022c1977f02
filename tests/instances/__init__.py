"""Several real bot processes sharing one database, as a scaled-out deployment runs them."""
