"""Moving from SQLite to PostgreSQL: `python -m bot export`, then `import`: the same reports."""

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.engine import create_engine
from reports.metrics import build_report
from reports.periods import parse_period
from tests.aggregates.support import filters
from tests.instances.support import run_command
from tests.support.settings import MSK, NOW


async def test_sqlite_exported_and_imported_into_postgresql_gives_identical_reports(
    hand_counted: AsyncEngine, postgres_url: str, tmp_path: Path
) -> None:
    sqlite_url = hand_counted.url.render_as_string(hide_password=False)
    exported = tmp_path / "appeals.csv"
    code, output = await run_command(tmp_path, sqlite_url, "export", str(exported))
    assert code == 0, output
    rows = exported.read_text("utf-8").splitlines()
    assert rows[0] == "appeal_id,client_id,channel,app,created_at"
    assert output.strip() == f"exported {len(rows) - 1} appeals to {exported}"

    code, output = await run_command(tmp_path, postgres_url, "import", str(exported))
    assert code == 0, output
    assert output.startswith(f"imported appeals.csv: {len(rows) - 1} rows, {len(rows) - 1} new")

    postgres = create_engine(postgres_url)
    try:
        for text in ("yesterday", "week", "month", "year", "2026-11-01..2026-11-10"):
            periods = parse_period(text, now=NOW, tz=MSK)
            for report_filter in await filters(hand_counted):
                async with hand_counted.connect() as before, postgres.connect() as after:
                    assert await build_report(after, periods, report_filter) == await build_report(
                        before, periods, report_filter
                    ), (text, report_filter)
        # The copy exports to the same file: same appeals, same order (first-appeal ties).
        again = tmp_path / "again.csv"
        code, output = await run_command(tmp_path, postgres_url, "export", str(again))
        assert code == 0, output
        assert again.read_text("utf-8") == exported.read_text("utf-8")
    finally:
        await postgres.dispose()


async def test_export_to_an_existing_file_is_refused_and_leaves_it_alone(
    hand_counted: AsyncEngine, tmp_path: Path
) -> None:
    existing = tmp_path / "appeals.csv"
    existing.write_text("keep me", "utf-8")
    sqlite_url = hand_counted.url.render_as_string(hide_password=False)
    code, output = await run_command(tmp_path, sqlite_url, "export", str(existing))
    assert (code, output.strip()) == (1, f"error: {existing} exists: name a new file")
    assert existing.read_text("utf-8") == "keep me"
