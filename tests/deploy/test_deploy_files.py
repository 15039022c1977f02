"""deploy/ checked by what can check it here: its commands are the one README documents, every
setting it names is one the bot reads, the proxy routes what Telegram and the desks call, and
`systemd-analyze verify` / `docker compose config` where those tools are present."""

import asyncio
import gettext
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SETTINGS = {name.upper() for name in Settings.model_fields}
BOTS = ("bot-1", "bot-2")


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text("utf-8"))


def unit() -> dict[str, dict[str, list[str]]]:
    """The unit file as section -> key -> values (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    section: dict[str, list[str]] = {}
    for line in (DEPLOY / "analytics-bot.service").read_text("utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key, []).append(value)
    return sections


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def code_lines(markdown: str) -> list[str]:
    """The lines of the fenced code blocks, each without its trailing `# comment`."""
    lines, inside = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line.split(" #")[0].strip())
    return lines


def dockerfile_instructions(name: str) -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text("utf-8").replace("\\\n", " ")
    return re.findall(rf"^{name} (.+)$", text, flags=re.MULTILINE)


def dockerfile_instruction(name: str) -> str:
    (found,) = dockerfile_instructions(name)
    return found


def image_health_check() -> list[str]:
    return json.loads(dockerfile_instruction("HEALTHCHECK").split(" CMD ", 1)[1])


def env_file_names(path: Path) -> set[str]:
    """Names set in an env file, commented-out examples included."""
    names = set()
    for line in path.read_text("utf-8").splitlines():
        match = re.fullmatch(r"#?\s*([A-Z][A-Z0-9_]*)=.*", line.strip())
        if match:
            names.add(match.group(1))
    return names


def test_the_unit_runs_the_command_readme_documents_with_restart_on_failure() -> None:
    service = unit()["Service"]
    (exec_start,) = service["ExecStart"]
    assert exec_start in code_lines(readme_section("Running in production"))
    assert shlex.split(exec_start)[1:] == ["-m", "bot"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == ["2"]  # a bad setting: no restart loop
    for key in ("User", "WorkingDirectory", "EnvironmentFile"):
        assert service[key] and service[key][0], key
    assert shlex.split(exec_start)[0] == f"{service['WorkingDirectory'][0]}/.venv/bin/python"
    assert unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_image_runs_the_command_readme_documents_and_checks_healthz() -> None:
    command = json.loads(dockerfile_instruction("CMD"))
    assert command == ["python", "-m", "bot"]
    assert shlex.join(command) in code_lines(readme_section("Command line"))
    assert dockerfile_instruction("FROM") == "python:3.11-slim"
    assert dockerfile_instruction("USER") == "bot"
    healthcheck = dockerfile_instruction("HEALTHCHECK")
    assert "http://127.0.0.1:8080/healthz" in healthcheck
    assert any("WEB_PORT=8080" in env.split() for env in dockerfile_instructions("ENV"))


def test_the_compose_file_runs_postgres_redis_two_bots_and_a_tls_proxy() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", *BOTS, "proxy"}
    for name in BOTS:
        bot = services[name]
        environment = bot["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert environment["DATABASE_URL"].endswith("@postgres:5432/bot")
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["TELEGRAM_WEBHOOK_URL"].startswith("https://")
        assert environment["TELEGRAM_WEBHOOK_URL"].endswith("/telegram")
        assert bot["env_file"] == "bot.env"
        assert bot["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert bot["healthcheck"]["test"] == ["CMD", *image_health_check()]
        assert bot["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert services["bot-1"] == services["bot-2"]  # identical instances
    for name in ("postgres", "redis", "proxy"):
        assert services[name]["healthcheck"]["test"], name
    assert {"80:80", "443:443"} <= set(services["proxy"]["ports"])
    # Only the proxy is reachable from outside.
    assert [name for name, service in services.items() if "ports" in service] == ["proxy"]


def test_the_proxy_sends_telegram_ingest_and_api_to_both_instances() -> None:
    caddyfile = (DEPLOY / "Caddyfile").read_text("utf-8")
    mounted = compose()["services"]["proxy"]["volumes"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in mounted
    (matcher,) = re.findall(r"@bot path (.+)", caddyfile)
    assert matcher.split() == ["/telegram", "/ingest/*", "/api/*"]
    (upstreams,) = re.findall(r"reverse_proxy (.+) \{", caddyfile)
    assert upstreams.split() == [f"{name}:8080" for name in BOTS]
    assert "health_uri /healthz" in caddyfile
    # The site is the public name, so Caddy terminates TLS with a certificate of its own.
    assert re.search(r"^\{\$BOT_DOMAIN\} \{$", caddyfile, flags=re.MULTILINE)


def test_every_setting_the_deploy_files_name_is_one_the_bot_reads() -> None:
    named = set()
    for name in BOTS:
        named |= set(compose()["services"][name]["environment"])
    named |= env_file_names(DEPLOY / "bot.env.example")
    # The unit's own Environment= lines set matplotlib's cache, not the bot's settings.
    assert [value.split("=")[0] for value in unit()["Service"]["Environment"]] == ["MPLCONFIGDIR"]
    assert named - SETTINGS == set()
    assert {"BOT_TOKEN", "DATABASE_URL", "REDIS_URL", "TELEGRAM_WEBHOOK_SECRET"} <= named
    # The compose file's own variables are not the bot's (nor passed to it as settings).
    assert env_file_names(DEPLOY / "compose.env.example") == {"BOT_DOMAIN", "POSTGRES_PASSWORD"}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not here")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify insists that ExecStart's program exists: this machine's Python stands in for the
    # installed one (the command itself is checked against README above).
    installed = shlex.split(unit()["Service"]["ExecStart"][0])[0]
    text = (DEPLOY / "analytics-bot.service").read_text("utf-8")
    copy = tmp_path / "analytics-bot.service"
    copy.write_text(text.replace(installed, sys.executable), "utf-8")
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


def _docker_compose() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run(
            [*command, "version"], capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return command
    return None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = _docker_compose()
    if command is None:
        pytest.skip("docker compose is not installed here")
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    shutil.copy(copy / "bot.env.example", copy / "bot.env")
    (copy / ".env").write_text("BOT_DOMAIN=bot.example.com\nPOSTGRES_PASSWORD=secret\n", "utf-8")
    checked = subprocess.run(
        [*command, "-f", str(copy / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_the_image_compiles_the_translations_as_make_install_does(tmp_path: Path) -> None:
    (run,) = dockerfile_instructions("RUN pip install -e \\.")
    (loop,) = re.findall(r"for lang in .*?done", run)
    shutil.copytree(ROOT / "locales", tmp_path / "locales", ignore=shutil.ignore_patterns("*.mo"))
    compiled = subprocess.run(
        ["sh", "-c", loop],
        cwd=tmp_path,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert compiled.returncode == 0, compiled.stderr
    for lang in ("ru", "en"):
        with (tmp_path / "locales" / lang / "LC_MESSAGES" / "messages.mo").open("rb") as mo:
            assert (
                gettext.GNUTranslations(mo).gettext("Daily digest")
                == {
                    "ru": "Ежедневная сводка",
                    "en": "Daily digest",
                }[lang]
            )


async def test_the_health_check_fails_when_healthz_does(unused_tcp_port: int) -> None:
    answer = {"status": 200}

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(status=answer["status"])

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    (healthcheck,) = image_health_check()[2:]
    probe = healthcheck.replace("127.0.0.1:8080", f"127.0.0.1:{unused_tcp_port}")
    try:
        codes = []
        for status in (200, 503):
            answer["status"] = status
            checked = await asyncio.create_subprocess_exec(
                sys.executable, "-c", probe, stderr=asyncio.subprocess.DEVNULL
            )
            codes.append(await asyncio.wait_for(checked.wait(), 30))
        assert codes[0] == 0 and codes[1] != 0, codes
    finally:
        await runner.cleanup()
