"""Plays the payment platform: realistic signed notifications, delivered with the platform's retries."""
