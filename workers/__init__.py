"""Decides and publishes: dedupe, apply to the payment state, reconcile cascades, emit events, park failures."""
