"""aiogram routers, thin: parse the command, call reports, hand the result to bot.delivery."""

from aiogram import Router

from handlers import access, channels, clients, digests, errors, sources, start


def build_routers() -> list[Router]:
    """Fresh routers in priority order (a router can be attached to one dispatcher only)."""
    return [
        start.build_router(),
        clients.build_router(),
        channels.build_router(),
        digests.build_router(),
        sources.build_router(),
        access.build_router(),
        errors.build_router(),
    ]
