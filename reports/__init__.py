"""Client analytics core: periods, metric queries, the report model and its printers (no aiogram)."""
