"""The operators' web console (`cvco-ipn console`): its own process and port, never on the public receiver."""
