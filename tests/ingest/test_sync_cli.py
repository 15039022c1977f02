"""`python -m bot sync chatwoot` as an operator runs it: a real subprocess against the fake API."""

import asyncio
import os
import sys
from pathlib import Path

from tests.ingest.fake_chatwoot import ACCOUNT_ID, TOKEN, FakeChatwoot, generate

ROOT = Path(__file__).resolve().parents[2]


async def run_cli(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BOT_", "DATABASE_", "CHATWOOT_", "INGEST_"))
    }
    environment.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        LANGUAGE="en",
        TIMEZONE="Europe/Moscow",
        PYTHONPATH=str(ROOT),
        **env,
    )
    # A subprocess, not asyncio.run in-process: the fake API runs on this test's loop.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_sync_reads_the_history_once_and_a_rerun_adds_nothing(tmp_path: Path) -> None:
    conversations = generate(30)
    contacts = len({conversation.contact_id for conversation in conversations})
    async with FakeChatwoot(conversations=conversations) as fake:
        settings = {
            "CHATWOOT_API_URL": fake.base_url,
            "CHATWOOT_API_TOKEN": TOKEN,
            "CHATWOOT_ACCOUNT_ID": str(ACCOUNT_ID),
        }
        code, out, err = await run_cli(
            tmp_path, "sync", "chatwoot", "--since", "2026-01-01", **settings
        )
        assert code == 0, err
        assert out.startswith("synced 30 conversations: ")
        assert TOKEN not in out + err
        code, out, _err = await run_cli(
            tmp_path, "sync", "chatwoot", "--since", "2026-01-01", **settings
        )
        assert code == 0
        assert "0 new events" in out
        code, out, _err = await run_cli(tmp_path, "report", "2026-01-01..2026-01-31")
        assert code == 0
        # A sync sees each conversation's start and current status: one appeal each.
        assert f"\nClients who wrote: {contacts} · +{contacts} " in out
        assert "\nConversations: 30 · +30 " in out


async def test_sync_without_its_settings_says_which_are_needed(tmp_path: Path) -> None:
    code, out, err = await run_cli(tmp_path, "sync", "chatwoot", "--since", "2026-01-01")
    assert (code, out) == (1, "")
    assert err == (
        "error: Chatwoot sync needs CHATWOOT_API_URL, CHATWOOT_API_TOKEN and CHATWOOT_ACCOUNT_ID\n"
    )


async def test_sync_refuses_a_bad_date_and_a_bad_label(tmp_path: Path) -> None:
    code, _out, err = await run_cli(tmp_path, "sync", "chatwoot", "--since", "2026-13-01")
    assert code == 2 and "not a date: '2026-13-01' (try 2026-01-01)" in err
    code, _out, err = await run_cli(
        tmp_path, "sync", "chatwoot", "--since", "2026-01-01", "--label", "a/b"
    )
    assert code == 1
    assert err == "error: --label may hold only letters, digits, '-' and '_' (at most 64)\n"
