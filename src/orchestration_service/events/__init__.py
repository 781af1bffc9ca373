"""Event bus port and adapters, the outbox relay, and the handlers of consumed events."""
