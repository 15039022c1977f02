"""`python -m bot` as an operator runs it: real subprocesses, one-line errors, files written."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def run_bot(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BOT_", "DATABASE_", "TELEGRAM_", "ADMIN_", "CSV_"))
    }
    environment.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        LANGUAGE="en",
        TIMEZONE="Europe/Moscow",
        BOT_TOKEN="",
    )
    environment.update(env)
    # cwd is the temp dir so no developer .env is read.
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env={**environment, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_appeals(path: Path, rows: list[str]) -> Path:
    path.write_text("appeal_id,client_id,channel,app,created_at\n" + "\n".join(rows), "utf-8")
    return path


def test_import_then_report_prints_the_summary_and_writes_three_files(tmp_path: Path) -> None:
    source = write_appeals(
        tmp_path / "appeals.csv",
        [
            "a1,c1,whatsapp,Sales,2026-11-10T10:00:00+03:00",
            'a2,c2,telegram,"Sales & Partners <VIP>",2026-11-10T11:00:00+03:00',
            "a3,c1,telegram,Bot,2026-11-10T12:00:00+03:00",
        ],
    )
    imported = run_bot("import", str(source), tmp_path=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "imported appeals.csv: 3 rows, 3 new, 0 duplicates"
    again = run_bot("import", str(source), tmp_path=tmp_path)
    assert again.stdout.strip() == "imported appeals.csv: 3 rows, 0 new, 3 duplicates"

    out = tmp_path / "out"
    report = run_bot("report", "2026-11-10", "--out", str(out), tmp_path=tmp_path)
    assert report.returncode == 0, report.stderr
    # Plain text for a terminal: names as they are, no tags.
    assert "Clients who wrote: 2" in report.stdout
    assert "<b>" not in report.stdout and "&amp;" not in report.stdout
    assert ",Sales & Partners <VIP>," in (out / "clients.csv").read_text("utf-8-sig")
    assert sorted(p.name for p in out.iterdir()) == [
        "apps.png",
        "channels.png",
        "clients.csv",
        "heatmap.png",
        "trend.png",
    ]
    assert (out / "clients.csv").read_bytes().startswith(b"\xef\xbb\xbfperiod_start,")
    assert (out / "heatmap.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # An app filter: no pies, the trend and the heatmap.
    filtered = tmp_path / "filtered"
    report = run_bot(
        "report", "2026-11-10", "--app", "Bot", "--out", str(filtered), tmp_path=tmp_path
    )
    assert report.returncode == 0, report.stderr
    assert sorted(p.name for p in filtered.iterdir()) == [
        "clients.csv",
        "heatmap.png",
        "trend.png",
    ]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["report", "2026-02-30"], {}, 'error: Invalid date “2026-02-30”. Try: '),
        (["report", "week", "--channel", "fax"], {}, "error: Unknown channel “fax”."),
        (["report", "week", "--tz", "Mars/Base"], {}, "error: unknown timezone 'Mars/Base'"),
        (["import", "missing.csv"], {}, "error: no such file: missing.csv"),
        (["report", "week"], {"TIMEZONE": "Mars/Base"}, "error: bad setting: TIMEZONE:"),
        (["report", "week"], {"ADMIN_IDS": "12,abc"}, "error: bad setting: ADMIN_IDS:"),
        # Checked at start, not at the first bare /clients.
        (
            ["report", "week"],
            {"DEFAULT_PERIOD": "blah"},
            'error: bad setting: DEFAULT_PERIOD: Unknown period “blah”. Try: today,',
        ),
        (["demo"], {"DEFAULT_PERIOD": "2099-01"}, "error: bad setting: DEFAULT_PERIOD: Period"),
        # Year 1 in a zone east of UTC: its first instant does not exist in UTC.
        (["report", "0001-02"], {}, 'error: Period “0001-02” is out of range.'),
        (["report", "week", "--out", "/proc/nope"], {}, "error: cannot write the report files"),
        # The database file the run itself created: an existing file, not a folder.
        (["report", "week", "--out", "cli.db"], {}, "error: cannot write the report files"),
        (
            ["report", "week"],
            {"DATABASE_URL": "postgresql+asyncpg://bot:secret@127.0.0.1:9/bot"},
            "error: cannot reach the database postgresql+asyncpg://bot:***@127.0.0.1:9/bot",
        ),
    ],
)
def test_errors_are_one_line_and_a_non_zero_exit(
    args: list[str], env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    result = run_bot(*args, tmp_path=tmp_path, **env)
    assert result.returncode == 1
    assert result.stderr.startswith(expected), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_a_file_with_a_bad_row_is_refused_with_its_line(tmp_path: Path) -> None:
    source = write_appeals(
        tmp_path / "bad.csv",
        ["a1,c1,vk,Main,2026-11-10T10:00:00+03:00", "a2,c2,vk,Main,2026-11-10T10:00:00"],
    )
    result = run_bot("import", str(source), tmp_path=tmp_path)
    assert result.returncode == 1
    assert "line 3: created_at '2026-11-10T10:00:00' has no UTC offset" in result.stderr
    assert "Traceback" not in result.stderr
    report = run_bot("report", "2026-11-10", tmp_path=tmp_path)
    # Nothing of the file was applied, not even its good first row.
    assert "All clients: 0\nNo conversations in this period." in report.stdout


def test_running_without_a_token_explains_how_to_get_one(tmp_path: Path) -> None:
    result = run_bot(tmp_path=tmp_path)
    assert result.returncode == 2
    assert "BOT_TOKEN is not set" in result.stderr
    assert "@BotFather" in result.stderr
    assert "python -m bot demo" in result.stderr and "python -m bot report week" in result.stderr
    assert "Traceback" not in result.stderr
    # It migrated the embedded database on the way.
    assert (tmp_path / "cli.db").exists()


def test_demo_loads_once_and_refuses_a_second_time_without_force(tmp_path: Path) -> None:
    first = run_bot("demo", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("demo data loaded: 5000 clients, ")
    second = run_bot("demo", tmp_path=tmp_path)
    assert second.returncode == 1
    assert "--force" in second.stderr
    forced = run_bot("demo", "--force", tmp_path=tmp_path)
    assert forced.returncode == 0


def test_russian_output_of_the_command_line(tmp_path: Path) -> None:
    """LANGUAGE=ru: every line the CLI prints, results and errors, is Russian, plurals right."""
    source = write_appeals(tmp_path / "appeals.csv", ["a1,c1,whatsapp,Sales,2026-11-10T10:00:00Z"])
    imported = run_bot("import", str(source), tmp_path=tmp_path, LANGUAGE="ru")
    assert imported.stdout == "импортирован appeals.csv: 1 строка, 1 новая, 0 повторов\n"
    again = run_bot("import", str(source), tmp_path=tmp_path, LANGUAGE="ru")
    assert again.stdout == "импортирован appeals.csv: 1 строка, 0 новых, 1 повтор\n"

    out = tmp_path / "out"
    report = run_bot("report", "2026-11-10", "--out", str(out), tmp_path=tmp_path, LANGUAGE="ru")
    assert report.returncode == 0, report.stderr
    assert "\nНаписавшие клиенты: 1 · +1 (нет более ранних данных)\n" in report.stdout
    assert report.stdout.splitlines()[-1].startswith(f"записаны файлы: {out / 'channels.png'}, ")

    (tmp_path / "exports").mkdir()
    cases = [
        (["import", "exports"], "ошибка: exports — это папка: укажите один файл .csv или .jsonl"),
        (["import", "missing.csv"], "ошибка: нет такого файла: missing.csv"),
        (
            ["report", "week", "--out", "cli.db"],
            "ошибка: не удалось записать файлы отчёта в cli.db: ",
        ),
    ]
    for args, expected in cases:
        result = run_bot(*args, tmp_path=tmp_path, LANGUAGE="ru")
        assert result.returncode == 1
        assert result.stderr.startswith(expected), result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_a_refused_file_lists_its_problems_in_russian(tmp_path: Path) -> None:
    source = write_appeals(
        tmp_path / "bad.csv",
        ["a1,c1,vk,Main,2026-11-10T10:00:00+03:00", "a2,c2,vk,Main,2026-11-10T10:00:00"],
    )
    result = run_bot("import", str(source), tmp_path=tmp_path, LANGUAGE="ru")
    assert result.returncode == 1
    assert result.stderr == (
        "Ничего не импортировано: в файле 1 ошибка.\n"
        "строка 3: у created_at '2026-11-10T10:00:00' нет смещения от UTC (добавьте Z или "
        "смещение, например +03:00)\n"
    )
