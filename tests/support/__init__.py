"""Harnesses all test layers share: settings, the dispatcher fed updates, the polling app."""
