"""CLI edges an operator hits: a pipe closed early (`| head`), a directory given to import."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CSV_"))},
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "LANGUAGE": "en",
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "report", "last month"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    # The reader goes away before the report is printed, as `| head -0` would.
    process.stdout.close()
    errors = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, errors
    assert errors == ""


def test_import_of_a_directory_says_it_is_one(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CSV_"))},
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "LANGUAGE": "en",
        "PYTHONPATH": str(ROOT),
    }
    (tmp_path / "exports").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "bot", "import", "exports"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "error: exports is a directory: name one .csv or .jsonl file\n"
