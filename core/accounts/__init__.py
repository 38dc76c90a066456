"""Customer accounts and the bank's settlement accounts."""
