"""Client analytics core: periods, metric queries, the report model and printers (no aiogram)."""
