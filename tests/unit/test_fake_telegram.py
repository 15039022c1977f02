"""The fake Bot API server, driven through the real aiogram Bot, AiohttpSession and Dispatcher."""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeChat,
    BufferedInputFile,
    ChatMemberAdministrator,
    ChatMemberMember,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
)

from tests.fake_telegram import NOT_MODIFIED, FakeTelegram, parse_html

TOKEN = "123456:TEST-token"
CHAT = 42
GROUP = -1001234567890


def png(width: int = 2, height: int = 2) -> bytes:
    """A valid grayscale PNG; beyond a megapixel only the header is real (the fake reads IHDR)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"" if width * height > 1_000_000 else (b"\x00" * (width + 1)) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg_header(width: int, height: int) -> bytes:
    """SOI, a JFIF segment and a baseline SOF0 frame header: enough to carry the size."""
    jfif = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + jfif + sof + b"\xff\xd9"


def keyboard(*datas: str) -> InlineKeyboardMarkup:
    buttons = [[InlineKeyboardButton(text=data, callback_data=data)] for data in datas]
    return InlineKeyboardMarkup(inline_keyboard=buttons)


async def raw_post(
    tg: FakeTelegram, method: str, token: str = TOKEN, **params: str
) -> tuple[int, dict[str, Any]]:
    """A request aiogram would refuse to build, posted as a plain form."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{tg.base_url}/bot{token}/{method}", data=params) as response,
    ):
        return response.status, await response.json()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    bot = tg.create_bot()
    try:
        yield bot
    finally:
        await bot.session.close()


# -- basics ------------------------------------------------------------------------------------


async def test_get_me_describes_the_bot_of_the_token(bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "fake_analytics_bot")
    assert me.can_join_groups is True
    assert me.id == bot.id


async def test_send_message_with_html_returns_the_visible_text_and_entities(
    tg: FakeTelegram, bot: Bot
) -> None:
    message = await bot.send_message(CHAT, "<b>Sales &amp; Partners &lt;VIP&gt;</b>: 12")

    assert message.text == "Sales & Partners <VIP>: 12"
    assert message.entities is not None
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bold", 0, 22)]
    assert message.from_user is not None and message.from_user.id == bot.id
    [call] = tg.calls("sendMessage")
    assert call.params["parse_mode"] == "HTML"
    assert call.params["text"] == "<b>Sales &amp; Partners &lt;VIP&gt;</b>: 12"
    assert tg.sent_messages(CHAT)[0]["text"] == message.text
    assert tg.errors() == []


async def test_every_supported_tag_is_accepted(bot: Bot) -> None:
    text = (
        "<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins><s>s</s>"
        '<strike>k</strike><del>d</del><span class="tg-spoiler">p</span><tg-spoiler>q</tg-spoiler>'
        '<a href="https://example.com/?a=1&amp;b=2">link</a><code>c</code>'
        '<pre><code class="language-python">x = 1</code></pre><blockquote>quote</blockquote>'
        '<blockquote expandable>more</blockquote><tg-emoji emoji-id="5368324170671202286">👍'
        "</tg-emoji> &#128512; &#x1F600; &quot;"
    )
    message = await bot.send_message(CHAT, text)

    assert message.entities is not None
    kinds = {entity.type for entity in message.entities}
    assert kinds == {
        "bold",
        "italic",
        "underline",
        "strikethrough",
        "spoiler",
        "text_link",
        "code",
        "pre",
        "blockquote",
        "expandable_blockquote",
        "custom_emoji",
    }
    pre = next(entity for entity in message.entities if entity.type == "pre")
    assert pre.language == "python"
    assert message.text is not None and message.text.endswith('😀 😀 "')


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("one<br>two", 'can\'t parse entities: Unsupported start tag "br" at byte offset 3'),
        ("<b>open", "can't parse entities: Can't find end tag corresponding to start tag b"),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "can't parse entities: Unexpected end tag at byte offset 1"),
        ("1 < 2", 'can\'t parse entities: Unsupported start tag "" at byte offset 2'),
        ("Sales & Partners", 'can\'t parse entities: Unescaped "&" at byte offset 6'),
        ("R&D &nbsp;", 'Unescaped "&" at byte offset 1'),
        ('<span class="bold">x</span>', 'Tag "span" must have class "tg-spoiler"'),
        ('<a href="x">y</a> <div>z</div>', 'Unsupported start tag "div" at byte offset 18'),
        ("<b", "Unclosed start tag at byte offset 0"),
        ('<tg-emoji emoji-id="abc">x</tg-emoji>', "Invalid custom emoji identifier specified"),
    ],
)
async def test_html_that_telegram_rejects(
    tg: FakeTelegram, bot: Bot, text: str, error: str
) -> None:
    with pytest.raises(TelegramBadRequest) as raised:
        await bot.send_message(CHAT, text)

    assert raised.value.message.startswith("Bad Request: ")
    assert error in raised.value.message
    [rejected] = tg.errors()
    assert rejected.status == 400 and rejected.params["text"] == text
    assert tg.sent_messages() == []


def test_html_parser_offsets_are_utf16_and_entities_need_no_semicolon() -> None:
    assert parse_html("😀 <b>x</b>") == ("😀 x", [{"type": "bold", "offset": 3, "length": 1}])
    assert parse_html("a &lt b &amp;c")[0] == "a < b &c"
    assert parse_html("Tom & Jerry", strict=False) == ("Tom & Jerry", [])
    assert parse_html("<B>x</>") == ("x", [{"type": "bold", "offset": 0, "length": 1}])


async def test_empty_text_is_rejected(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="Bad Request: message text is empty"):
        await bot.send_message(CHAT, "")  # aiogram omits the empty field altogether
    with pytest.raises(TelegramBadRequest, match="Bad Request: message text is empty"):
        await bot.send_message(CHAT, "<b> </b>\n")


async def test_length_is_counted_after_entity_parsing(tg: FakeTelegram, bot: Bot) -> None:
    visible_4096 = "<b>" + "a" * 4000 + "</b><i>" + "&lt;" * 90 + "</i>" + "&#33;" * 6
    message = await bot.send_message(CHAT, visible_4096)
    assert message.text is not None and len(message.text) == 4096

    with pytest.raises(TelegramBadRequest, match="Bad Request: message is too long"):
        await bot.send_message(CHAT, "<b>" + "a" * 4097 + "</b>")
    assert [call.status for call in tg.calls("sendMessage")] == [200, 400]


async def test_length_counts_utf16_code_units(bot: Bot) -> None:
    await bot.send_message(CHAT, "😀" * 2048)  # 4096 UTF-16 units
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, "😀" * 2049)


async def test_length_in_code_points_when_asked() -> None:
    async with FakeTelegram(token=TOKEN, length_unit="codepoints") as tg:
        bot = tg.create_bot()
        try:
            await bot.send_message(CHAT, "😀" * 4096)
            with pytest.raises(TelegramBadRequest, match="message is too long"):
                await bot.send_message(CHAT, "😀" * 4097)
        finally:
            await bot.session.close()


async def test_caption_limit(bot: Bot) -> None:
    photo = BufferedInputFile(png(), "chart.png")
    message = await bot.send_photo(CHAT, photo, caption="<b>" + "c" * 1024 + "</b>")
    assert message.caption is not None and len(message.caption) == 1024
    assert message.caption_entities is not None

    with pytest.raises(TelegramBadRequest, match="Bad Request: message caption is too long"):
        await bot.send_photo(CHAT, BufferedInputFile(png(), "chart.png"), caption="c" * 1025)


# -- files -------------------------------------------------------------------------------------


async def test_media_group_of_two_pngs_records_both_files(tg: FakeTelegram, bot: Bot) -> None:
    first, second = png(3, 2), png(4, 5)
    messages = await bot.send_media_group(
        CHAT,
        [
            InputMediaPhoto(media=BufferedInputFile(first, "a.png"), caption="<b>Week</b>"),
            InputMediaPhoto(media=BufferedInputFile(second, "b.png")),
        ],
    )

    assert len(messages) == 2
    assert messages[0].media_group_id is not None
    assert messages[0].media_group_id == messages[1].media_group_id
    assert messages[0].caption == "Week"
    assert [(m.photo[-1].width, m.photo[-1].height) for m in messages if m.photo] == [
        (3, 2),
        (4, 5),
    ]
    [call] = tg.calls("sendMediaGroup")
    uploads = call.media_files()
    assert [(u.filename, u.data) for u in uploads if u] == [("a.png", first), ("b.png", second)]
    assert len(tg.sent_messages(CHAT)) == 2


@pytest.mark.parametrize(
    ("count", "error"),
    [(1, "media group must include 2-10 items"), (11, "too many messages to send as an album")],
)
async def test_media_group_size_is_two_to_ten(bot: Bot, count: int, error: str) -> None:
    media = [InputMediaPhoto(media=BufferedInputFile(png(), f"{i}.png")) for i in range(count)]
    with pytest.raises(TelegramBadRequest, match=error):
        await bot.send_media_group(CHAT, media)


async def test_documents_do_not_mix_with_photos(bot: Bot) -> None:
    media = [
        InputMediaPhoto(media=BufferedInputFile(png(), "a.png")),
        InputMediaDocument(media=BufferedInputFile(b"x", "a.csv")),
    ]
    with pytest.raises(TelegramBadRequest, match="document can't be mixed"):
        await bot.send_media_group(CHAT, media)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"GIF89a not a png", "Bad Request: IMAGE_PROCESS_FAILED"),
        (png(6000, 5000), "Bad Request: PHOTO_INVALID_DIMENSIONS"),
        (png(2100, 100), "Bad Request: PHOTO_INVALID_DIMENSIONS"),
        (b"", "Bad Request: file must be non-empty"),
    ],
)
async def test_photo_content_is_checked(bot: Bot, data: bytes, error: str) -> None:
    with pytest.raises(TelegramBadRequest, match=error):
        await bot.send_photo(CHAT, BufferedInputFile(data, "chart.png"))


async def test_jpeg_size_is_read_from_the_frame_header(bot: Bot) -> None:
    message = await bot.send_photo(CHAT, BufferedInputFile(jpeg_header(640, 480), "x.jpg"))
    assert message.photo is not None
    assert (message.photo[-1].width, message.photo[-1].height) == (640, 480)


async def test_size_limits_for_photos_and_documents() -> None:
    async with FakeTelegram(token=TOKEN, max_photo_bytes=100, max_upload_bytes=1000) as tg:
        bot = tg.create_bot()
        try:
            with pytest.raises(TelegramBadRequest, match="too big for a photo"):
                await bot.send_photo(CHAT, BufferedInputFile(png(40, 40) + b"\0" * 100, "a.png"))
            with pytest.raises(TelegramEntityTooLarge):
                await bot.send_document(CHAT, BufferedInputFile(b"x" * 1001, "big.csv"))
            await bot.send_document(CHAT, BufferedInputFile(b"x" * 1000, "ok.csv"))
        finally:
            await bot.session.close()


async def test_send_document_records_filename_and_bytes(tg: FakeTelegram, bot: Bot) -> None:
    data = "\ufeffКлиент;Обращений\r\nSales & Partners;12\r\n".encode()
    message = await bot.send_document(
        CHAT, BufferedInputFile(data, "clients_week.csv"), caption="Week 47"
    )

    [call] = tg.calls("sendDocument")
    upload = call.file("document")
    assert upload is not None and (upload.filename, upload.data) == ("clients_week.csv", data)
    assert message.document is not None and message.document.file_name == "clients_week.csv"
    downloaded = await bot.download(message.document)
    assert downloaded is not None and downloaded.read() == data


# -- keyboards, callbacks, edits ---------------------------------------------------------------


async def test_callback_data_is_limited_to_64_bytes(tg: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(CHAT, "ok", reply_markup=keyboard("a" * 64, "й" * 32))
    for too_long in ("a" * 65, "й" * 33):
        with pytest.raises(TelegramBadRequest, match="Bad Request: BUTTON_DATA_INVALID"):
            await bot.send_message(CHAT, "no", reply_markup=keyboard(too_long))
    assert len(tg.errors()) == 2


async def test_inline_keyboard_must_be_a_list_of_lists(tg: FakeTelegram) -> None:
    flat = '{"inline_keyboard": [{"text": "x", "callback_data": "y"}]}'
    status, body = await raw_post(tg, "sendMessage", chat_id="42", text="x", reply_markup=flat)
    assert status == 400
    assert body["description"] == (
        'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of '
        "Arrays"
    )
    text_only = '{"inline_keyboard": [[{"text": "x"}]]}'
    status, body = await raw_post(
        tg, "sendMessage", chat_id="42", text="x", reply_markup=text_only
    )
    assert "Text buttons are unallowed in the inline keyboard" in body["description"]


async def test_button_press_reaches_the_bot_and_is_answered_once(
    tg: FakeTelegram, bot: Bot
) -> None:
    sent = await bot.send_message(CHAT, "Pick", reply_markup=keyboard("period:week"))
    update_id = tg.press_button(
        "period:week", chat_id=CHAT, user_id=CHAT, message_id=sent.message_id
    )

    [update] = await bot.get_updates()
    assert update.update_id == update_id
    query = update.callback_query
    assert query is not None and query.data == "period:week"
    assert query.message is not None and query.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query.id, text="Building…") is True
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)
    with pytest.raises(ValueError, match="no button"):
        tg.press_button("forged", chat_id=CHAT, user_id=CHAT, message_id=sent.message_id)


async def test_edits_follow_telegram_rules(tg: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(CHAT, "Loading…", reply_markup=keyboard("refresh"))
    edited = await bot.edit_message_text(
        "<b>Done</b>", chat_id=CHAT, message_id=sent.message_id, reply_markup=keyboard("refresh")
    )
    assert isinstance(edited, Message) and edited.text == "Done"
    assert edited.edit_date is not None

    with pytest.raises(TelegramBadRequest) as raised:
        await bot.edit_message_text(
            "<b>Done</b>",
            chat_id=CHAT,
            message_id=sent.message_id,
            reply_markup=keyboard("refresh"),
        )
    assert raised.value.message == NOT_MODIFIED
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=CHAT, message_id=999)

    await bot.edit_message_reply_markup(chat_id=CHAT, message_id=sent.message_id)
    stored = tg.message(CHAT, sent.message_id)
    assert stored is not None and "reply_markup" not in stored
    assert tg.sent_messages(CHAT)[0]["text"] == "Loading…"  # history keeps what was sent


# -- commands, chats, members ------------------------------------------------------------------


async def test_set_my_commands_validates_like_telegram(tg: FakeTelegram, bot: Bot) -> None:
    commands = [
        BotCommand(command="clients", description="Client analytics"),
        BotCommand(command="/settings", description="Report settings"),
    ]
    assert await bot.set_my_commands(commands) is True
    assert [c.command for c in await bot.get_my_commands()] == ["clients", "settings"]

    cases = [
        ([BotCommand(command="Clients", description="x")], "Bad Request: BOT_COMMAND_INVALID"),
        ([BotCommand(command="week-report", description="x")], "BOT_COMMAND_INVALID"),
        ([BotCommand(command="c" * 33, description="x")], "command length must not exceed 32"),
        ([BotCommand(command="c", description=" ")], "command description must be non-empty"),
        ([BotCommand(command="c", description="d" * 257)], "must not exceed 256"),
        ([BotCommand(command=f"c{i}", description="x") for i in range(101)], "COMMANDS_TOO_MUCH"),
    ]
    for bad, error in cases:
        with pytest.raises(TelegramBadRequest, match=error):
            await bot.set_my_commands(bad)
    assert len(tg.errors()) == len(cases)


async def test_commands_are_kept_per_scope_and_language(tg: FakeTelegram, bot: Bot) -> None:
    groups = BotCommandScopeAllGroupChats()
    await bot.set_my_commands([BotCommand(command="clients", description="Клиенты")], groups, "ru")
    assert await bot.get_my_commands() == []
    assert [c.description for c in await bot.get_my_commands(groups, "ru")] == ["Клиенты"]
    assert tg.commands({"type": "all_group_chats"}, "ru")[0]["command"] == "clients"
    assert await bot.delete_my_commands(groups, "ru") is True
    assert await bot.get_my_commands(groups, "ru") == []
    with pytest.raises(TelegramBadRequest, match="invalid language code"):
        await bot.get_my_commands(language_code="rus")


async def test_a_chats_own_menu_needs_a_chat_the_bot_knows() -> None:
    async with FakeTelegram(token=TOKEN, strict_chats=True) as tg:
        bot = tg.create_bot()
        try:
            menu = [BotCommand(command="digest", description="Digests")]
            with pytest.raises(TelegramBadRequest, match="chat not found"):
                await bot.set_my_commands(menu, BotCommandScopeChat(chat_id=42), "en")
            tg.add_chat(42, "private")
            await bot.set_my_commands(menu, BotCommandScopeChat(chat_id=42), "en")
            assert tg.commands({"type": "chat", "chat_id": 42}, "en")[0]["command"] == "digest"
            assert tg.commands(language_code="en") == []
            assert await bot.delete_my_commands(BotCommandScopeChat(chat_id=42), "en") is True
            assert tg.commands({"type": "chat", "chat_id": 42}, "en") == []
        finally:
            await bot.session.close()


async def test_chat_id_must_be_an_integer_or_a_known_username(tg: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await bot.send_message("sales team", "x")
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await bot.send_message("@nobody", "x")
    tg.add_chat(GROUP, "supergroup", title="Sales", username="sales_team")
    message = await bot.send_message("@sales_team", "x")
    assert (message.chat.id, message.chat.type, message.chat.title) == (
        GROUP,
        "supergroup",
        "Sales",
    )


async def test_get_chat_and_get_chat_member(tg: FakeTelegram, bot: Bot) -> None:
    tg.add_chat(GROUP, "supergroup", title="Support")
    tg.set_member(GROUP, 7, "administrator")

    chat = await bot.get_chat(GROUP)
    assert (chat.id, chat.type, chat.title) == (GROUP, "supergroup", "Support")
    admin = await bot.get_chat_member(GROUP, 7)
    assert isinstance(admin, ChatMemberAdministrator)
    member = await bot.get_chat_member(GROUP, 8)
    assert isinstance(member, ChatMemberMember)


async def test_chat_action_and_leave_chat(tg: FakeTelegram, bot: Bot) -> None:
    assert await bot.send_chat_action(GROUP, "upload_photo") is True
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(GROUP, "dancing")
    assert await bot.leave_chat(GROUP) is True
    with pytest.raises(TelegramForbiddenError, match="bot is not a member of the supergroup"):
        await bot.send_message(GROUP, "still here?")


# -- updates -----------------------------------------------------------------------------------


async def test_get_updates_honours_offset_and_limit(tg: FakeTelegram, bot: Bot) -> None:
    ids = [tg.send_message(f"m{i}", chat_id=CHAT, user_id=CHAT) for i in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3

    first = await bot.get_updates(limit=2)
    assert [u.update_id for u in first] == ids[:2]
    rest = await bot.get_updates(offset=ids[1] + 1)
    assert [u.update_id for u in rest] == ids[2:]
    await tg.wait_confirmed(ids[1])
    assert [u["update_id"] for u in tg.pending_updates] == ids[2:]


async def test_command_message_carries_a_bot_command_entity(tg: FakeTelegram, bot: Bot) -> None:
    tg.send_message(
        "/clients@fake_analytics_bot week", chat_id=GROUP, user_id=7, chat_type="supergroup"
    )
    tg.send_message("no command", chat_id=CHAT, user_id=CHAT)
    command, plain = await bot.get_updates()

    assert command.message is not None and command.message.entities is not None
    [entity] = command.message.entities
    assert (entity.type, entity.offset, entity.length) == ("bot_command", 0, 27)
    assert command.message.chat.type == "supergroup"
    assert plain.message is not None and plain.message.entities is None


async def test_long_poll_wakes_up_when_an_update_is_queued(tg: FakeTelegram, bot: Bot) -> None:
    polling = asyncio.create_task(bot.get_updates(timeout=30))
    await tg.wait_polling()
    update_id = tg.send_message("hello", chat_id=CHAT, user_id=CHAT)

    async with asyncio.timeout(5):
        updates = await polling
    assert [u.update_id for u in updates] == [update_id]


async def test_long_poll_times_out_with_no_updates(tg: FakeTelegram, bot: Bot) -> None:
    assert await bot.get_updates(timeout=1) == []
    [call] = tg.calls("getUpdates")
    assert call.params["timeout"] == "1" and call.result == []


async def test_updates_the_bot_did_not_ask_for_are_dropped(tg: FakeTelegram, bot: Bot) -> None:
    tg.my_chat_member(GROUP, user_id=7, new_status="administrator")
    message_id = tg.send_message("hi", chat_id=CHAT, user_id=CHAT)
    updates = await bot.get_updates(allowed_updates=["message"])
    assert [u.update_id for u in updates] == [message_id]


async def test_delete_webhook_can_drop_pending_updates(tg: FakeTelegram, bot: Bot) -> None:
    update_id = tg.send_message("old", chat_id=CHAT, user_id=CHAT)
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    await tg.wait_confirmed(update_id)
    assert await bot.get_updates() == []


async def test_dispatcher_polling_end_to_end(tg: FakeTelegram, bot: Bot) -> None:
    router = Router()

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        await message.answer("Hello, <b>team</b> &amp; friends")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    polling = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, polling_timeout=1)
    )
    try:
        await tg.wait_polling()
        update_id = tg.send_message("/start", chat_id=CHAT, user_id=CHAT)
        [reply] = await tg.wait_for("sendMessage")
        await tg.wait_confirmed(update_id)
    finally:
        await dispatcher.stop_polling()
        await polling

    assert reply.result["text"] == "Hello, team & friends"
    assert reply.result["chat"]["id"] == CHAT
    assert tg.calls("getMe")
    assert tg.errors() == []


# -- faults ------------------------------------------------------------------------------------


async def test_429_raises_retry_after_and_is_not_executed(tg: FakeTelegram, bot: Bot) -> None:
    tg.fail_next("sendMessage", status=429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as raised:
        await bot.send_message(CHAT, "digest")
    assert raised.value.retry_after == 7
    assert tg.sent_messages() == []

    await bot.send_message(CHAT, "digest")
    [error] = tg.errors()
    assert error.response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }


async def test_server_errors_and_a_non_json_gateway_page(tg: FakeTelegram, bot: Bot) -> None:
    tg.fail_next("sendMessage", status=500)
    with pytest.raises(TelegramServerError, match="Internal Server Error"):
        await bot.send_message(CHAT, "x")
    tg.fail_next("*", status=502, raw_body="<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(ClientDecodeError):
        await bot.get_me()
    assert [call.status for call in tg.errors()] == [500, 502]


async def test_dropped_connections(tg: FakeTelegram, bot: Bot) -> None:
    tg.drop_next("sendMessage")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(CHAT, "lost")
    assert tg.sent_messages() == []

    tg.drop_next("sendMessage", after_processing=True)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(CHAT, "sent, answer lost")
    assert [m["text"] for m in tg.sent_messages()] == ["sent, answer lost"]
    assert all(call.response is None for call in tg.calls("sendMessage"))


async def test_stalled_request_times_out_in_the_client(tg: FakeTelegram, bot: Bot) -> None:
    release = tg.stall_next("sendMessage")
    with pytest.raises(TelegramNetworkError, match="timeout"):
        await bot.send_message(CHAT, "slow", request_timeout=1)
    [call] = await tg.wait_for("sendMessage")  # the fake saw the client hang up
    assert call.response is None
    release.set()
    assert tg.sent_messages() == []


async def test_blocked_user_and_kicked_bot_get_403(tg: FakeTelegram, bot: Bot) -> None:
    tg.block_chat(CHAT)
    with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(CHAT, "digest")
    tg.my_chat_member(GROUP, user_id=7, old_status="member", new_status="kicked")
    with pytest.raises(TelegramForbiddenError, match="kicked from the supergroup chat"):
        await bot.send_photo(GROUP, BufferedInputFile(png(), "a.png"))
    tg.unblock_chat(CHAT)
    await bot.send_message(CHAT, "welcome back")


async def test_migrated_group_answers_with_the_new_chat_id(tg: FakeTelegram, bot: Bot) -> None:
    tg.add_chat(-4242, "group", title="Support")
    tg.migrate_chat(-4242, GROUP)
    with pytest.raises(TelegramMigrateToChat) as raised:
        await bot.send_message(-4242, "digest")
    assert raised.value.migrate_to_chat_id == GROUP

    message = await bot.send_message(raised.value.migrate_to_chat_id, "digest")
    assert (message.chat.type, message.chat.title) == ("supergroup", "Support")


async def test_wrong_token_is_unauthorized(tg: FakeTelegram) -> None:
    stranger = tg.create_bot(token="654321:other-token")
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await stranger.get_me()
    finally:
        await stranger.session.close()
    [error] = tg.errors()
    assert error.response == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_unknown_methods_are_not_found_and_names_ignore_case(
    tg: FakeTelegram, bot: Bot
) -> None:
    with pytest.raises(TelegramNotFound, match="Not Found"):
        await bot.send_poll(CHAT, "Useful?", options=["yes", "no"])
    status, body = await raw_post(tg, "SENDMESSAGE", chat_id="42", text="hi")
    assert status == 200 and body["result"]["text"] == "hi"
    assert tg.calls("sendmessage")[0].method == "sendMessage"


async def test_second_poller_terminates_the_first_with_409(tg: FakeTelegram, bot: Bot) -> None:
    other = tg.create_bot()
    try:
        first = asyncio.create_task(bot.get_updates(timeout=30))
        await tg.wait_polling()
        assert await other.get_updates(timeout=0) == []
        with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
            await first
    finally:
        await other.session.close()
    [conflict] = tg.errors()
    assert conflict.status == 409


async def test_second_poller_can_be_the_one_refused() -> None:
    async with FakeTelegram(token=TOKEN, poll_conflict="new") as tg:
        first_bot, second_bot = tg.create_bot(), tg.create_bot()
        try:
            first = asyncio.create_task(first_bot.get_updates(timeout=30))
            await tg.wait_polling()
            with pytest.raises(TelegramConflictError, match="only one bot instance"):
                await second_bot.get_updates(timeout=0)
            update_id = tg.send_message("still mine", chat_id=CHAT, user_id=CHAT)
            async with asyncio.timeout(5):
                assert [u.update_id for u in await first] == [update_id]
        finally:
            await first_bot.session.close()
            await second_bot.session.close()


async def test_webhook_blocks_get_updates(tg: FakeTelegram, bot: Bot) -> None:
    await bot.set_webhook("https://example.com/hook")
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    await bot.delete_webhook()
    assert await bot.get_updates() == []


# -- rate limits and helpers -------------------------------------------------------------------


async def test_rate_violations_are_computed_over_recorded_sends(
    tg: FakeTelegram, bot: Bot
) -> None:
    for _ in range(3):
        await bot.send_message(GROUP, "burst")
    await bot.send_message(CHAT, "elsewhere")

    per_chat = tg.rate_violations()
    assert [(v.kind, v.chat_id, v.count) for v in per_chat] == [
        ("per_chat", GROUP, 2),
        ("per_chat", GROUP, 3),
    ]
    assert tg.rate_violations(per_chat_per_sec=3) == []
    [group] = tg.rate_violations(per_chat_per_sec=3, group_per_min=2)
    assert (group.kind, group.chat_id, group.limit) == ("group", GROUP, 2)


async def test_enforced_rate_limits_answer_429() -> None:
    async with FakeTelegram(token=TOKEN, enforce_rate_limits=True) as tg:
        bot = tg.create_bot()
        try:
            await bot.send_message(CHAT, "first")
            with pytest.raises(TelegramRetryAfter) as raised:
                await bot.send_message(CHAT, "too soon")
            assert raised.value.retry_after == 1
            await bot.send_message(CHAT + 1, "another chat")
        finally:
            await bot.session.close()
        assert [m["text"] for m in tg.sent_messages()] == ["first", "another chat"]


async def test_wait_for_reports_what_it_saw(tg: FakeTelegram, bot: Bot) -> None:
    await bot.get_me()
    with pytest.raises(TimeoutError, match=r"1 sendPhoto call\(s\), got 0; last calls: getMe"):
        await tg.wait_for("sendPhoto", timeout=0.05)
