"""The vocabulary the receiver, the workers and the tools share: settings, notification, job, event."""
