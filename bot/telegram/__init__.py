"""The Telegram side: outbound pacing and retry, middlewares, i18n, keyboards, report delivery."""
