"""Pure and single-module tests: periods, metrics, printers, schema, rules, import, limiter."""
